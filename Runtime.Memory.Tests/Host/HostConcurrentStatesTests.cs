using Runtime.Host.Lua;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Host;

/// <summary>
/// Several of the host's Lua runs at once, on different threads and memory services: each state's <c>memory</c> and
/// <c>zlib</c> modules must read their own service (the modules' context lives in the state, not in statics), so each
/// service sees exactly its own script's allocations and snapshots.
/// </summary>
public sealed class HostConcurrentStatesTests : IDisposable
{
    private const string Script = """
        local id = ...
        assert(memory.start(1))
        local keep = {}
        for i = 1, 300 do keep[i] = { i } end
        local first = memory.snapshot()
        for i = 1, 100 do keep[#keep + 1] = string.rep("c", 100) .. id .. i end
        assert(memory.snapshot() == 2, "another state's snapshot was counted here")
        local z = assert(zlib.compress(string.rep(id, 5000)))
        assert(zlib.decompress(z, 5000 * #id) == string.rep(id, 5000))
        assert(memory.compare(2, first, 1):find("size="), "no difference between this state's snapshots")
        memory.stop()
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("runtimemem-states-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [SkippableFact]
    public void States_on_different_threads_each_see_their_own_memory_service()
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Zlib); // each state compresses through its zlib module
        string path = Path.Combine(_dir, "state.lua");
        File.WriteAllText(path, Script);
        const int Threads = 4, Runs = 10;
        var errors = new System.Collections.Concurrent.ConcurrentQueue<string>();
        using var start = new Barrier(Threads);
        var threads = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            for (int run = 0; run < Runs; run++)
            {
                using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Default);
                runtime.Tracer.FrameProvider = new LuaFrameProvider();
                LuaScript.Outcome outcome = LuaScript.Run(runtime, path, "state.lua", [$"s{t}"]);
                if (!outcome.Succeeded)
                {
                    errors.Enqueue($"thread {t}, run {run}: {outcome.Error}");
                }
                else if (runtime.Raw.GetStatistics().Allocations == 0 || outcome.Zlib is not (> 0, 0))
                {
                    errors.Enqueue($"thread {t}, run {run}: zlib's streams did not go through this state's service ({outcome.Zlib})");
                }
                else if (outcome.LiveBlocksAfterClose != 0 || runtime.Obj.LiveBlocks != 0 || runtime.Raw.LiveBlocks != 0)
                {
                    errors.Enqueue($"thread {t}, run {run}: {outcome.LiveBlocksAfterClose} blocks live after lua_close");
                }
            }
        })).ToArray();
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        Assert.Empty(errors);
    }
}
