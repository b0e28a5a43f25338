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
