using System.Collections.Concurrent;
using Runtime.Memory.Accounting;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Accounting;

/// <summary>Per-domain accounting: exact single-threaded, exact at quiescence under concurrency, per-instance.</summary>
public sealed unsafe class AccountingTests
{
    [Theory, ClassData(typeof(AllDomains))]
    public void Every_figure_is_exact_on_one_thread(MemoryDomainKind kind)
    {
        MemoryDomain domain = TestRuntimes.Create()[kind];
        void* a = domain.Malloc(100);
        void* b = domain.Calloc(10, 20);
        void* c = domain.Malloc(0);
        a = domain.Realloc(a, 300);  // +200
        b = domain.Realloc(b, 50);   // -150
        domain.Free(c);
        Assert.True(domain.Malloc(nuint.MaxValue) == null);

        DomainStatistics s = domain.GetStatistics();
        Assert.Equal(kind, s.Domain);
        Assert.Equal("malloc", s.Allocator);
        Assert.Equal(2, s.LiveBlocks);
        Assert.Equal(350, s.LiveBytes);
        Assert.Equal(500, s.PeakBytes);        // 100 + 200 + 0 + 200 growth
        Assert.Equal(3, s.Allocations);
        Assert.Equal(1, s.Frees);
        Assert.Equal(2, s.Reallocations);
        Assert.Equal(1, s.Failures);
        Assert.Equal(500, s.BytesAllocated);

        domain.Free(a);
        domain.Free(b);
        s = domain.GetStatistics();
        Assert.Equal((0, 0, 500), (s.LiveBlocks, s.LiveBytes, s.PeakBytes));
    }

    [Fact]
    public void The_peak_is_exact_across_publish_thresholds_on_one_thread()
    {
        MemoryDomain domain = TestRuntimes.Create().Obj;
        var blocks = new List<nint>();
        long expectedPeak = 0, live = 0;

        // Rise and fall several times across the 64 KiB publishing threshold, with a higher peak each time.
        for (int wave = 1; wave <= 4; wave++)
        {
            for (int i = 0; i < wave * 300; i++)
            {
                blocks.Add((nint)domain.Malloc(100));
                live += 100;
                expectedPeak = Math.Max(expectedPeak, live);
            }

            for (int i = 0; i < wave * 250; i++)
            {
                domain.Free((void*)blocks[^1]);
                blocks.RemoveAt(blocks.Count - 1);
                live -= 100;
            }

            DomainStatistics s = domain.GetStatistics();
            Assert.Equal((live, expectedPeak), (s.LiveBytes, s.PeakBytes));
        }

        foreach (nint p in blocks)
        {
            domain.Free((void*)p);
        }

        MemoryAssert.NoLiveBlocks(domain);
        Assert.True(expectedPeak > MemoryAccounting.PublishThreshold, "the test must cross the publishing threshold");
    }

    [Fact]
    public void The_peak_is_exact_when_a_thread_that_ended_is_folded_in_before_the_next_one_starts()
    {
        MemoryDomain domain = TestRuntimes.Create().Mem;
        nint p1 = 0;
        var t1 = new Thread(() => p1 = (nint)domain.Malloc(1000));
        t1.Start();
        t1.Join();

        void* p2 = domain.Malloc(500); // this thread's first use folds the ended thread's unpublished 1,000 bytes in
        domain.Free((void*)p1);
        domain.Free(p2);

        DomainStatistics s = domain.GetStatistics();
        Assert.Equal((0, 1500, 2, 2), (s.LiveBytes, s.PeakBytes, s.Allocations, s.Frees));
    }

    /// <summary>
    /// Blocks that count as 1 GiB each (BlockSize) but are 16 real bytes: lets a test reach gigabytes of accounted
    /// live memory cheaply, so errors far larger than the 64 KiB publishing slack stand out.
    /// </summary>
    private sealed class GiantBlockAllocator : MemoryAllocator
    {
        public const long Giant = 1L << 30;
        private readonly SystemAllocator _system = new();

        public override void* Malloc(nuint size) => _system.Malloc(16);

        public override void* Calloc(nuint count, nuint size) => _system.Calloc(1, 16);

        public override void* Realloc(void* ptr, nuint newSize) => ptr;

        public override void Free(void* ptr) => _system.Free(ptr);

        public override nuint BlockSize(void* ptr) => (nuint)Giant;
    }

    [Fact]
    public void With_cross_thread_frees_and_a_concurrent_reader_the_peak_stays_within_the_documented_bound()
    {
        // Two producers allocate and hand blocks through a queue of capacity 4 to a consumer that frees them, so at
        // most 4 + 2 + 1 blocks are ever live. The documented bound adds (threads − 1) × 64 KiB. A reader polls the
        // statistics the whole time: reading while others allocate and free must not push the peak up.
        MemoryDomain domain = TestRuntimes.Create().Obj;
        domain.SetAllocator(new GiantBlockAllocator());
        const int Producers = 2, Capacity = 4, PerProducer = 30_000;
        const long TrueMaximum = (Capacity + Producers + 1) * GiantBlockAllocator.Giant;
        using var queue = new System.Collections.Concurrent.BlockingCollection<nint>(Capacity);
        using var done = new ManualResetEventSlim();

        var reader = new Thread(() =>
        {
            while (!done.IsSet)
            {
                _ = domain.GetStatistics();
            }
        });
        var consumer = new Thread(() =>
        {
            foreach (nint block in queue.GetConsumingEnumerable())
            {
                domain.Free((void*)block);
            }
        });
        var producers = Enumerable.Range(0, Producers).Select(_ => new Thread(() =>
        {
            for (int i = 0; i < PerProducer; i++)
            {
                queue.Add((nint)domain.Malloc(64));
            }
        })).ToList();

        reader.Start();
        consumer.Start();
        producers.ForEach(p => p.Start());
        producers.ForEach(p => p.Join());
        queue.CompleteAdding();
        consumer.Join();
        done.Set();
        reader.Join();

        DomainStatistics s = domain.GetStatistics();
        Assert.Equal((0L, 0L, (long)Producers * PerProducer), (s.LiveBlocks, s.LiveBytes, s.Frees));
        Assert.InRange(s.PeakBytes, GiantBlockAllocator.Giant, TrueMaximum + (Producers * MemoryAccounting.PublishThreshold));
    }

    [Fact]
    public void Counts_of_threads_that_have_ended_are_kept()
    {
        RuntimeMemory runtime = TestRuntimes.Create();
        var blocks = new ConcurrentBag<nint>();
        for (int t = 0; t < 20; t++)
        {
            var thread = new Thread(() =>
            {
                for (int i = 0; i < 10; i++)
                {
                    blocks.Add((nint)runtime.Obj.Malloc(8));
                }
            });
            thread.Start();
            thread.Join();
        }

        Assert.Equal((200, 1600), (runtime.Obj.GetStatistics().LiveBlocks, runtime.Obj.GetStatistics().LiveBytes));
        foreach (nint p in blocks)
        {
            runtime.Obj.Free((void*)p);
        }

        DomainStatistics s = runtime.Obj.GetStatistics();
        Assert.Equal((0, 0, 200, 200, 1600), (s.LiveBlocks, s.LiveBytes, s.Allocations, s.Frees, s.PeakBytes));
    }

    [Fact]
    public void Concurrent_allocation_and_cross_thread_frees_leave_exact_accounting_on_every_domain()
    {
        RuntimeMemory runtime = TestRuntimes.Create();
        const int Threads = 4;
        const int PerThread = 20_000;
        var handoff = new ConcurrentQueue<(MemoryDomainKind Kind, nint Block, nuint Size, byte Seed)>();
        long freedByOthers = 0;

        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            var rng = new Random(1234 + t);
            for (int i = 0; i < PerThread; i++)
            {
                var kind = (MemoryDomainKind)rng.Next(3);
                nuint size = (nuint)rng.Next(0, 700);
                byte seed = (byte)rng.Next(256);
                byte* p = (byte*)runtime[kind].Malloc(size);
                if (size > 0)
                {
                    Blocks.Fill(p, size, seed);
                }

                if (i % 2 == 0)
                {
                    handoff.Enqueue((kind, (nint)p, size, seed)); // freed by whichever thread dequeues it
                }
                else
                {
                    Assert.True(Blocks.Holds(p, size, seed));
                    runtime[kind].Free(p);
                }

                if (handoff.TryDequeue(out var other))
                {
                    Assert.True(Blocks.Holds((void*)other.Block, other.Size, other.Seed), "a block handed to another thread was corrupted");
                    runtime[other.Kind].Free((void*)other.Block);
                    Interlocked.Increment(ref freedByOthers);
                }
            }
        });

        while (handoff.TryDequeue(out var rest))
        {
            runtime[rest.Kind].Free((void*)rest.Block);
        }

        RuntimeMemoryStatistics s = runtime.GetStatistics();
        Assert.Equal(0, s.LiveBlocks);
        Assert.Equal(0, s.LiveBytes);
        Assert.Equal(Threads * PerThread, s.Domains.Sum(d => d.Allocations));
        Assert.Equal(Threads * PerThread, s.Domains.Sum(d => d.Frees));
        Assert.All(s.Domains, d => Assert.Equal((d.Allocations, 0L, 0L), (d.Frees, d.LiveBlocks, d.LiveBytes)));
        Assert.True(freedByOthers > 0);
    }

    [Fact]
    public void Two_runtimes_share_no_state_even_on_one_thread()
    {
        RuntimeMemory a = TestRuntimes.Create();
        RuntimeMemory b = TestRuntimes.Create();

        void* pa = a.Obj.Malloc(10);
        void* pb = b.Obj.Malloc(20);
        void* pa2 = a.Obj.Malloc(30);
        b.Obj.InstallHook(new RecordingAllocator());

        Assert.Equal((2, 40), (a.Obj.GetStatistics().LiveBlocks, a.Obj.GetStatistics().LiveBytes));
        Assert.Equal((1, 20), (b.Obj.GetStatistics().LiveBlocks, b.Obj.GetStatistics().LiveBytes));
        Assert.IsType<SystemAllocator>(a.Obj.Allocator);

        a.Obj.Free(pa);
        a.Obj.Free(pa2);
        b.Obj.Free(pb);
        MemoryAssert.NoLiveBlocks(a);
        MemoryAssert.NoLiveBlocks(b);
        Assert.Equal(0, a.Mem.GetStatistics().Allocations);
    }
}
