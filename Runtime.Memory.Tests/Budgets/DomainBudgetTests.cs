using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Budgets;

/// <summary>
/// A domain's budget (<see cref="MemoryDomain.MaxBytes"/>): an allocation that would pass it returns null like out of
/// memory, is counted as a refusal, costs nothing live, and the domain serves again once memory is freed.
/// </summary>
public sealed unsafe class DomainBudgetTests
{
    [SkippableTheory]
    [ClassData(typeof(AllAllocatorsAndDomains))]
    public void Exceed_free_and_allocate_again(string allocator, MemoryDomainKind kind)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        using RuntimeMemory runtime = TestRuntimes.Create(allocator);
        MemoryDomain domain = runtime[kind];
        long block = TestRuntimes.Accounted(domain, 100);
        domain.MaxBytes = 3 * block;

        void* a = domain.Malloc(100);
        void* b = domain.Malloc(100);
        void* c = domain.Malloc(100);
        Assert.True(a != null && b != null && c != null);
        DomainStatistics full = domain.GetStatistics();
        Assert.Equal(3 * block, full.LiveBytes);

        Assert.True(domain.Malloc(100) == null);
        Assert.True(domain.Calloc(1, 100) == null);
        Assert.True(domain.Malloc(1) == null);
        DomainStatistics refused = domain.GetStatistics();
        Assert.Equal(3, refused.LimitRefusals);
        Assert.Equal(3, refused.Failures);
        Assert.Equal(0, refused.OutOfMemoryFailures);
        Assert.Equal(full.LiveBytes, refused.LiveBytes); // a refused block is freed again and never counted
        Assert.Equal(full.LiveBlocks, refused.LiveBlocks);
        Assert.Equal(full.Allocations, refused.Allocations);
        Assert.Equal(3 * block, refused.PeakBytes);

        domain.Free(b);
        void* again = domain.Malloc(100);
        Assert.True(again != null);
        Blocks.Fill(again, 100, 7);
        Assert.True(Blocks.Holds(again, 100, 7));

        domain.Free(a);
        domain.Free(c);
        domain.Free(again);
        Assert.Equal(0, domain.GetStatistics().LiveBlocks);
        Assert.Equal(0, runtime.Debugger.Violations);
    }

    [SkippableTheory]
    [ClassData(typeof(AllAllocatorsAndDomains))]
    public void A_refused_realloc_returns_null_and_leaves_the_block_as_it_was(string allocator, MemoryDomainKind kind)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        using RuntimeMemory runtime = TestRuntimes.Create(allocator);
        MemoryDomain domain = runtime[kind];
        void* p = domain.Malloc(200);
        Blocks.Fill(p, 200, 3);
        domain.MaxBytes = TestRuntimes.Accounted(domain, 200) + 100;

        Assert.True(domain.Realloc(p, 2000) == null);
        Assert.True(Blocks.Holds(p, 200, 3));
        Assert.Equal(TestRuntimes.Accounted(domain, 200), domain.GetStatistics().LiveBytes);
        Assert.Equal(1, domain.GetStatistics().LimitRefusals);

        void* grown = domain.Realloc(p, 250); // within the budget
        Assert.True(grown != null);
        Assert.True(Blocks.Holds(grown, 200, 3));
        domain.Free(grown);
        Assert.Equal(0, domain.GetStatistics().LiveBytes);
    }

    [Theory]
    [InlineData(AllocatorNames.Malloc)]
    [InlineData(AllocatorNames.Pymalloc)]
    [InlineData(AllocatorNames.PymallocDebug)]
    public void A_shrink_is_never_refused_even_over_the_budget(string allocator)
    {
        using RuntimeMemory runtime = TestRuntimes.Create(allocator);
        MemoryDomain domain = runtime.Obj;
        void* p = domain.Malloc(4000);
        Blocks.Fill(p, 4000, 9);
        domain.MaxBytes = 10; // far below what is live

        void* shrunk = domain.Realloc(p, 100);
        Assert.True(shrunk != null);
        Assert.True(Blocks.Holds(shrunk, 100, 9));
        Assert.Equal(0, domain.GetStatistics().LimitRefusals);
        Assert.True(domain.Malloc(16) == null); // growth still refused: 100 live > 10
        domain.Free(shrunk);
    }

    [Fact]
    public void A_budget_lowered_below_the_live_size_refuses_growth_until_enough_is_freed()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        MemoryDomain domain = runtime.Mem;
        var blocks = Enumerable.Range(0, 64).Select(_ => (nint)domain.Malloc(64)).ToList();
        domain.MaxBytes = 32 * 64;
        Assert.True(domain.Malloc(64) == null);

        foreach (nint p in blocks.Take(33))
        {
            domain.Free((void*)p);
        }

        void* fits = domain.Malloc(64); // 31 live + 1 = 32 blocks of 64 bytes
        Assert.True(fits != null);
        Assert.True(domain.Malloc(64) == null);

        domain.MaxBytes = null;
        Assert.Null(domain.MaxBytes);
        void* free = domain.Malloc(64);
        Assert.True(free != null);

        domain.Free(fits);
        domain.Free(free);
        foreach (nint p in blocks.Skip(33))
        {
            domain.Free((void*)p);
        }

        Assert.Equal(0, domain.GetStatistics().LiveBlocks);
    }

    [Fact]
    public void The_budget_applies_under_tracing_and_a_refused_block_is_not_traced()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        runtime.Tracer.Start();
        MemoryDomain domain = runtime.Obj;
        domain.MaxBytes = 256;
        void* a = domain.Malloc(200);
        Assert.True(a != null);
        Assert.True(domain.Malloc(200) == null);
        Assert.Equal(1, runtime.Tracer.TracedBlocks);

        runtime.Tracer.Stop();
        runtime.Tracer.Start(sampleBytes: 1); // sampling: the inlined path checks the budget too
        Assert.True(domain.Malloc(200) == null);
        domain.Free(a);
        void* b = domain.Malloc(200);
        Assert.True(b != null);
        domain.Free(b);
        Assert.Equal(0, domain.GetStatistics().LiveBlocks);
        runtime.Tracer.Stop();
    }

    [Fact]
    public void Threads_allocating_together_stay_within_the_documented_bound()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        MemoryDomain domain = runtime.Obj;
        const long budget = 4L << 20;
        domain.MaxBytes = budget;
        const int threads = 4;
        var held = new List<nint>[threads];
        long refusals = 0;
        Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
        {
            held[t] = [];
            for (int i = 0; i < 200_000; i++)
            {
                void* p = domain.Malloc(64);
                if (p == null)
                {
                    Interlocked.Increment(ref refusals);
                    if (held[t].Count > 0)
                    {
                        domain.Free((void*)held[t][^1]);
                        held[t].RemoveAt(held[t].Count - 1);
                    }
                }
                else
                {
                    held[t].Add((nint)p);
                }
            }
        });

        DomainStatistics s = domain.GetStatistics();
        Assert.True(refusals > 0);
        Assert.Equal(refusals, s.LimitRefusals);
        long bound = budget + (threads - 1) * Runtime.Memory.Accounting.MemoryAccounting.PublishThreshold;
        Assert.True(s.PeakBytes <= bound, $"peak {s.PeakBytes} passed the bound {bound}");
        Assert.True(s.LiveBytes <= bound);
        foreach (List<nint> list in held)
        {
            list.ForEach(p => domain.Free((void*)p));
        }

        Assert.Equal(0, domain.GetStatistics().LiveBytes);
    }

    [Fact]
    public void A_negative_budget_is_an_argument_error()
    {
        using RuntimeMemory runtime = TestRuntimes.Create();
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => runtime.Raw.MaxBytes = -1);
        Assert.Contains("0 or more", error.Message);
        Assert.Null(runtime.Raw.MaxBytes);
    }

    [Fact]
    public void The_statistics_snapshot_carries_each_budget()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        runtime.Mem.MaxBytes = 1 << 20;
        runtime.Tag("zlib").MaxBytes = 4096;
        RuntimeMemoryStatistics s = runtime.GetStatistics();
        Assert.Null(s[MemoryDomainKind.Raw].MaxBytes);
        Assert.Equal(1 << 20, s[MemoryDomainKind.Mem].MaxBytes);
        Assert.Equal(4096, s.Library("ZLIB")!.MaxBytes); // tags match ignoring case
        Assert.NotNull(s[MemoryDomainKind.Mem].SmallObjects);
        Assert.Null(s[MemoryDomainKind.Raw].SmallObjects);
    }

    [Fact]
    public void The_report_lists_each_budget_after_the_table_and_nothing_without_one()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        Assert.DoesNotContain("budget", Runtime.Memory.Diagnostics.StatisticsReport.Format(runtime.GetStatistics()));

        runtime.Obj.MaxBytes = 1 << 20;
        runtime.Tag("zlib").MaxBytes = 4096;
        Assert.True(runtime.Obj.Malloc(2 << 20) == null);
        string report = Runtime.Memory.Diagnostics.StatisticsReport.Format(runtime.GetStatistics());
        Assert.EndsWith("budget obj: 1,048,576 bytes, 1 refused\nbudget zlib: 4,096 bytes, 0 refused, 0 bytes live\n", report);
    }
}
