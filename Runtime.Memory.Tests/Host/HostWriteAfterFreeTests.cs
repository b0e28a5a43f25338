using Runtime.Host.Lua;
using Runtime.Memory.Tests.Infrastructure;
using Runtime.Memory.Tracing;

namespace Runtime.Memory.Tests.Host;

/// <summary>
/// A block a Lua script made and freed, written after free: the report names both places as Lua file:line, through
/// the host's frame provider. A script cannot write after free by itself, so the test writes into a block the
/// script's collection freed (found in the obj domain's quarantine by its free traceback) and flushes.
/// </summary>
public sealed unsafe class HostWriteAfterFreeTests : IDisposable
{
    private const string Script = """
        local t = {}
        for i = 1, 200 do t[i] = { i } end
        t = nil
        collectgarbage()
        """;

    private readonly string _dir = Directory.CreateTempSubdirectory("runtimemem-waf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_write_after_free_into_a_block_the_script_freed_names_the_lua_lines_where_it_was_allocated_and_freed()
    {
        string path = Path.Combine(_dir, "waf.lua");
        File.WriteAllText(path, Script);
        using RuntimeMemory runtime = RuntimeMemory.Create(new RuntimeMemoryOptions
        {
            Allocator = AllocatorNames.PymallocDebug,
            Debug = new RuntimeMemoryDebugOptions { OnViolation = ViolationAction.Throw },
        });
        runtime.Tracer.FrameProvider = new LuaFrameProvider();
        runtime.Tracer.Start(frames: 4);
        LuaScript.Outcome outcome = LuaScript.Run(runtime, path, "waf.lua", []);
        Assert.True(outcome.Succeeded, outcome.Error);
        Assert.Equal(0, runtime.Debugger.Violations);

        // A block made at line 2 and freed by the collection at line 4, still in the quarantine after lua_close.
        QuarantinedBlock victim = runtime.Obj.DebugHook!.FreeQuarantine!.Peek().First(b =>
            b.Allocated?.MostRecent is { File: "waf.lua", Line: 2 } && b.Freed?.MostRecent is { File: "waf.lua", Line: 4 });
        ((byte*)victim.Data)[0] ^= 0x5A;

        MemoryViolation v = DebugRuntimes.Catch(() => runtime.Debugger.FlushQuarantine());
        Assert.Equal(MemoryViolationKind.WriteAfterFree, v.Kind);
        Assert.Equal(victim.Data, v.Address);
        Assert.Contains("Memory block allocated at (most recent call first):\n  File \"waf.lua\", line 2", v.Report);
        Assert.Contains("Memory block freed at (most recent call first):\n  File \"waf.lua\", line 4", v.Report);
        runtime.Tracer.Stop();
    }
}
