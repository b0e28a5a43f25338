using System.Collections.Concurrent;
using Runtime.Memory.Hosting;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Reliability;

/// <summary>
/// Four threads allocate blocks of 1 to 2048 bytes in all three domains (malloc, calloc, realloc), write a pattern,
/// and hand half of them to the other threads through queues, which check the pattern and free them; meanwhile a
/// fifth thread keeps installing and removing pass-through hooks and starting and stopping tracing, in every order, so
/// that blocks are allocated under one chain and freed under another. Afterwards nothing may be left: every block
/// freed, the domains' live blocks and bytes exactly 0, no debug violation, the chains as they were, and the
/// small-object allocator's arenas all back with the OS. The accounting tests and the small-object tests cover
/// cross-thread frees on a fixed chain; this adds the chain changing under the traffic, raw included, on every base
/// allocator and with the debug hooks.
/// </summary>
public sealed unsafe class ConcurrencyStressTests(Xunit.Abstractions.ITestOutputHelper output)
{
    private const int Workers = 4;
    private const int OperationsPerWorker = 12_000;
    private const int MaxSize = 2048;
    private const int KeptPerWorker = 32;
    private const int MinChurnCycles = 25;
    private const int MaxChurnCycles = 2_000;

    public static TheoryData<string> Allocators() =>
        new(AllocatorNames.Pymalloc, AllocatorNames.Malloc, AllocatorNames.PymallocDebug, AllocatorNames.MallocDebug);

    [Theory]
    [MemberData(nameof(Allocators))]
    public void Blocks_handed_between_threads_while_hooks_and_tracing_come_and_go_are_all_freed_and_accounted(string allocator)
    {
        using var runtime = RuntimeMemory.Create(new RuntimeMemoryOptions
        {
            Allocator = allocator,
            Debug = { OnViolation = ViolationAction.Throw }, // a violation is an exception on the thread, collected below
        });
        string[] chains = MemoryDomainKindExtensions.All.ToArray().Select(k => runtime[k].DescribeChain()).ToArray();
        var queues = Enumerable.Range(0, Workers).Select(_ => new ConcurrentQueue<Block>()).ToArray();
        var errors = new ConcurrentQueue<Exception>();
        var counts = new Counts();
        using var start = new Barrier(Workers + 1);
        int running = Workers;

        var workers = Enumerable.Range(0, Workers).Select(t => new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                Work(runtime, t, queues, counts);
            }
            catch (Exception ex)
            {
                errors.Enqueue(ex);
            }
            finally
            {
                Interlocked.Decrement(ref running);
            }
        }) { IsBackground = true, Name = $"stress worker {t}" }).ToList();

        int cycles = 0;
        var churn = new Thread(() =>
        {
            try
            {
                start.SignalAndWait();
                cycles = Churn(runtime, () => Volatile.Read(ref running) > 0);
            }
            catch (Exception ex)
            {
                errors.Enqueue(ex);
            }
        }) { IsBackground = true, Name = "hook and tracing churn" };

        workers.ForEach(w => w.Start());
        churn.Start();
        workers.ForEach(w => w.Join());
        churn.Join();

        foreach (ConcurrentQueue<Block> queue in queues)
        {
            while (queue.TryDequeue(out Block rest))
            {
                Release(runtime, rest, counts);
            }
        }

        output.WriteLine($"{allocator}: {counts.Allocated} blocks, {counts.Reallocated} reallocs, {cycles} hook and tracing cycles");
        Assert.True(errors.IsEmpty, string.Join("\n---\n", errors));
        Assert.InRange(cycles, MinChurnCycles, MaxChurnCycles);
        Assert.Equal(0, counts.Corrupt);
        Assert.Equal(0, counts.Null);
        Assert.Equal((long)Workers * OperationsPerWorker, counts.Allocated);
        Assert.Equal(counts.Allocated, counts.Freed);

        // The chains are what they were: every hook that went in came out.
        Assert.False(runtime.Tracer.IsTracing);
        Assert.Equal(chains, MemoryDomainKindExtensions.All.ToArray().Select(k => runtime[k].DescribeChain()));

        RuntimeMemoryStatistics statistics = runtime.GetStatistics();
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            DomainStatistics d = statistics[kind];
            Assert.Equal((kind, 0L, 0L), (kind, runtime[kind].LiveBlocks, runtime[kind].LiveBytes));
            Assert.Equal((kind, 0L, 0L), (kind, d.LiveBlocks, d.LiveBytes));
            Assert.Equal((kind, d.Allocations), (kind, d.Frees));
            Assert.Equal((kind, 0L), (kind, d.Failures));
        }

        Assert.Equal(counts.Allocated, statistics.Domains.Sum(d => d.Allocations));
        Assert.Equal(counts.Reallocated, statistics.Domains.Sum(d => d.Reallocations));

        Assert.Equal(0, runtime.Debugger.Violations);
        Assert.Null(runtime.Debugger.LastViolation);
        Assert.Equal(0, runtime.Debugger.LiveBlocks);
        Assert.Equal(AllocatorNames.IsDebug(allocator), runtime.Mem.DebugHook is not null);

        AssertArenasReturned(runtime, allocator);
    }

    /// <summary>A block in flight: where it lives, how big it is and the seed of its pattern.</summary>
    private readonly record struct Block(MemoryDomainKind Kind, nint Address, int Size, byte Seed);

    private sealed class Counts
    {
        public long Allocated;
        public long Reallocated;
        public long Freed;
        public long Corrupt;
        public long Null;
    }

    private static void Work(RuntimeMemory runtime, int t, ConcurrentQueue<Block>[] queues, Counts counts)
    {
        var rng = new Random(1_000 + t);
        var kept = new List<Block>(KeptPerWorker + 1);
        for (int i = 0; i < OperationsPerWorker; i++)
        {
            var kind = (MemoryDomainKind)rng.Next(MemoryDomainKindExtensions.Count);
            MemoryDomain domain = runtime[kind];
            int size = rng.Next(1, MaxSize + 1);
            byte seed = (byte)rng.Next(256);
            int op = rng.Next(10);
            byte* p;
            if (op < 2)
            {
                p = (byte*)domain.Calloc(1, (nuint)size);
                if (p != null && !Blocks.IsZero(p, (nuint)size))
                {
                    Interlocked.Increment(ref counts.Corrupt);
                }
            }
            else
            {
                p = (byte*)domain.Malloc((nuint)size);
            }

            if (p == null)
            {
                Interlocked.Increment(ref counts.Null);
                continue;
            }

            Interlocked.Increment(ref counts.Allocated);
            Blocks.Fill(p, (nuint)size, seed);
            if (op == 9)
            {
                int newSize = rng.Next(1, MaxSize + 1);
                byte* q = (byte*)domain.Realloc(p, (nuint)newSize);
                if (q == null)
                {
                    Interlocked.Increment(ref counts.Null); // p is still live: free it as it was
                }
                else
                {
                    Interlocked.Increment(ref counts.Reallocated);
                    if (!Blocks.Holds(q, (nuint)Math.Min(size, newSize), seed))
                    {
                        Interlocked.Increment(ref counts.Corrupt);
                    }

                    p = q;
                    size = newSize;
                    Blocks.Fill(p, (nuint)size, seed);
                }
            }

            var block = new Block(kind, (nint)p, size, seed);
            if (rng.Next(2) == 0)
            {
                queues[(t + 1 + rng.Next(Workers - 1)) % Workers].Enqueue(block); // another thread checks and frees it
            }
            else
            {
                kept.Add(block);
                if (kept.Count > KeptPerWorker)
                {
                    int victim = rng.Next(kept.Count);
                    Release(runtime, kept[victim], counts);
                    kept[victim] = kept[^1];
                    kept.RemoveAt(kept.Count - 1);
                }
            }

            for (int j = 0; j < 2 && queues[t].TryDequeue(out Block other); j++)
            {
                Release(runtime, other, counts);
            }
        }

        foreach (Block block in kept)
        {
            Release(runtime, block, counts);
        }
    }

    private static void Release(RuntimeMemory runtime, Block block, Counts counts)
    {
        if (!Blocks.Holds((void*)block.Address, (nuint)block.Size, block.Seed))
        {
            Interlocked.Increment(ref counts.Corrupt);
        }

        runtime[block.Kind].Free((void*)block.Address);
        Interlocked.Increment(ref counts.Freed);
    }

    /// <summary>
    /// Installs and removes one pass-through hook per domain (the same instances each time) and starts and stops
    /// tracing, varying which goes on top and which comes off first, until the workers are done (at least
    /// <see cref="MinChurnCycles"/>, at most <see cref="MaxChurnCycles"/> cycles). Returns the cycles run.
    /// </summary>
    private static int Churn(RuntimeMemory runtime, Func<bool> workersRunning)
    {
        var hooks = MemoryDomainKindExtensions.All.ToArray().Select(_ => new PassThroughHook()).ToArray();
        int cycles = 0;
        while (cycles < MaxChurnCycles && (cycles < MinChurnCycles || workersRunning()))
        {
            bool tracingFirst = cycles % 2 == 1; // tracing below the hooks, or above them
            bool hooksOffFirst = cycles % 3 == 0;
            if (tracingFirst)
            {
                runtime.Tracer.Start(frames: 1 + (cycles % 4));
            }

            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                runtime[kind].InstallHook(hooks[(int)kind]);
            }

            if (!tracingFirst)
            {
                runtime.Tracer.Start(frames: 1 + (cycles % 4));
            }

            if (!hooksOffFirst)
            {
                runtime.Tracer.Stop();
            }

            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                Assert.True(runtime[kind].RemoveHook(hooks[(int)kind]), $"cycle {cycles}: the {kind} hook was not in its chain");
            }

            if (hooksOffFirst)
            {
                runtime.Tracer.Stop();
            }

            cycles++;
        }

        return cycles;
    }

    private static void AssertArenasReturned(RuntimeMemory runtime, string allocator)
    {
        bool smallObjects = AllocatorNames.WithoutDebug(allocator) == AllocatorNames.Pymalloc;
        Assert.Equal(0, runtime.Debugger.FlushQuarantine()); // freed debug blocks held in the quarantine go back (none damaged)
        Assert.Equal(0, runtime.Debugger.QuarantinedBlocks);
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            SmallObjectAllocator? small = runtime.SmallObjects(kind);
            Assert.Equal((kind, smallObjects && kind != MemoryDomainKind.Raw), (kind, small is not null));
            if (small is null)
            {
                continue;
            }

            small.Collect(); // the workers have ended: their heaps are abandoned and swept
            SmallObjectStatistics s = small.GetStatistics();
            Assert.Equal((kind, 0L), (kind, s.BlocksInUse));
            Assert.True(s.ArenasCurrent <= 1, $"{kind}: {s.ArenasCurrent} arenas still mapped; at most the one spare may stay");
            Assert.Equal(s.ArenasAllocatedTotal - s.ArenasReclaimed, s.ArenasCurrent);
            Assert.True(s.ArenasAllocatedTotal > 0, $"{kind}: the traffic never reached the small-object allocator");

            Assert.True(small.TryRelease(), $"{kind}: the allocator still holds blocks");
            Assert.Equal((kind, 0), (kind, small.ArenasCurrent)); // the spare too: every arena is back with the OS
        }
    }

    /// <summary>A hook that forwards every call: what a profiler or a counter installs.</summary>
    private sealed class PassThroughHook : MemoryHook
    {
        public override string Name => "pass-through";
    }
}
