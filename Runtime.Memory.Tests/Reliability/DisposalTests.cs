using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Reliability;

/// <summary>
/// What a runtime does once disposed, the same on every allocator: allocations return null, frees do nothing (the
/// block is left where it is, never touched), nothing is reported as a misuse; and calls racing with
/// <see cref="RuntimeMemory.Dispose"/> fail the same clean way, never touching released memory.
/// </summary>
public sealed unsafe class DisposalTests
{
    public static TheoryData<string> Allocators()
    {
        var data = new TheoryData<string>();
        foreach (string allocator in AllAllocatorsAndDomains.Allocators)
        {
            data.Add(allocator);
        }

        return data;
    }

    [SkippableTheory, MemberData(nameof(Allocators))]
    public void After_Dispose_allocations_return_null_and_frees_of_earlier_blocks_do_nothing(string allocator)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        RuntimeMemory runtime = TestRuntimes.Create(allocator);
        runtime.Debugger.OnViolation = ViolationAction.Throw; // a free reported as a misuse would throw here
        var live = new List<(MemoryDomain Domain, nint Block)>();
        foreach (MemoryDomain domain in new[] { runtime.Raw, runtime.Mem, runtime.Obj })
        {
            foreach (nuint size in new nuint[] { 16, 100, 600, 70_000 })
            {
                live.Add((domain, (nint)domain.Malloc(size)));
            }
        }

        runtime.Dispose();

        foreach ((MemoryDomain domain, nint block) in live)
        {
            domain.Free((void*)block); // the out-of-order shutdown of an embedding host: no report, no crash
            Assert.True(domain.Malloc(16) == null);
            Assert.True(domain.Calloc(2, 16) == null);
            Assert.True(domain.Realloc(null, 16) == null);
            Assert.True(domain.Realloc((void*)block, 32) == null);
        }

        Assert.Equal(0, runtime.Debugger.Violations);
        runtime.Dispose(); // twice is allowed
    }

    /// <summary>
    /// Dispose from inside an allocator call of the same runtime (a hook that shuts the runtime down): the call in flight
    /// is the caller's own, so nothing is released under it; the hook's own allocation still completes on live memory,
    /// and the runtime is closed from then on.
    /// </summary>
    [Fact]
    public void Dispose_from_inside_a_call_releases_nothing_under_that_call()
    {
        using var logs = new FakeLoggerProvider();
        using ILoggerFactory factory = LoggerFactory.Create(b => b.AddProvider(logs));
        var options = new Runtime.Memory.Hosting.RuntimeMemoryOptions();
        var runtime = new RuntimeMemory(new DefaultAllocatorProvider(options), options, factory);
        var hook = new DisposingHook(runtime);
        runtime.Obj.InstallHook(hook);

        byte* p = (byte*)runtime.Obj.Malloc(48);

        Assert.True(p != null); // allocated by pymalloc after Dispose began: its arenas were not released
        new Span<byte>(p, 48).Fill(7); // and the memory is ours to write
        Assert.True(runtime.Obj.IsClosed);
        Assert.True(runtime.Obj.Malloc(16) == null);
        runtime.Obj.Free(p); // a free after Dispose: nothing
        Assert.Contains(logs.Collector.GetSnapshot(), r => r.Id.Id == 4503);
    }

    private sealed class DisposingHook(RuntimeMemory runtime) : MemoryHook
    {
        public override void* Malloc(nuint size)
        {
            runtime.Dispose();
            return Inner.Malloc(size);
        }
    }

    /// <summary>Dispose while other threads allocate, reallocate and free in every domain: they see null and no-ops, nothing crashes.</summary>
    [SkippableTheory, MemberData(nameof(Allocators))]
    public void Calls_racing_with_Dispose_fail_cleanly(string allocator)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        for (int round = 0; round < 15; round++)
        {
            RuntimeMemory runtime = TestRuntimes.Create(allocator);
            runtime.Debugger.OnViolation = ViolationAction.Throw;
            using var started = new CountdownEvent(2);
            long nulls = 0;
            Exception? failure = null;
            var threads = Enumerable.Range(0, 2).Select(t => new Thread(() =>
            {
                try
                {
                    var rng = new Random(t + round);
                    var held = new nint[3]; // few live blocks: Dispose often finds none and releases everything
                    MemoryDomain[] domains = [runtime.Raw, runtime.Mem, runtime.Obj];
                    started.Signal();
                    for (int i = 0; i < 200_000; i++)
                    {
                        int slot = rng.Next(held.Length);
                        MemoryDomain domain = domains[slot];
                        if (held[slot] != 0)
                        {
                            if ((i & 3) == 0)
                            {
                                void* moved = domain.Realloc((void*)held[slot], (nuint)rng.Next(1, 2000));
                                if (moved != null)
                                {
                                    held[slot] = (nint)moved;
                                    continue;
                                }
                            }

                            domain.Free((void*)held[slot]);
                            held[slot] = 0;
                        }
                        else
                        {
                            held[slot] = (nint)domain.Malloc((nuint)rng.Next(1, 1200));
                            if (held[slot] == 0)
                            {
                                Interlocked.Increment(ref nulls);
                            }
                        }
                    }
                }
                catch (Exception ex)
                {
                    failure = ex;
                }
            }))
            .ToList();
            threads.ForEach(t => t.Start());
            started.Wait();
            Thread.Sleep(round % 4);
            runtime.Dispose();
            threads.ForEach(t => t.Join());

            Assert.Null(failure);
            Assert.Equal(0, runtime.Debugger.Violations);
        }
    }
}
