using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Domains;

/// <summary>
/// PEP 445's guarantees, one named test per edge case, each on raw, mem and obj
/// and on each built-in allocator (after CPython's <c>test_pymem_alloc0</c> and mimalloc's <c>test-api.c</c>).
/// </summary>
public sealed unsafe class DomainGuaranteeTests
{
    private static readonly nuint AboveMax = (nuint)nint.MaxValue + 1;

    /// <summary>
    /// A fresh runtime and the domain under test. With <paramref name="record"/> a recorder sits on top so the test
    /// can see what reached the allocator; without it the domain calls its built-in allocator directly (its fast path).
    /// Every test here calls it first: on a machine without the allocator's library (mimalloc's) the test is skipped,
    /// naming the file and the package.
    /// </summary>
    private static (RuntimeMemory Runtime, MemoryDomain Domain, RecordingAllocator Recorder) Setup(string allocator, MemoryDomainKind kind, bool record = false)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        var runtime = TestRuntimes.Create(allocator);
        var recorder = new RecordingAllocator();
        if (record)
        {
            runtime[kind].InstallHook(recorder);
        }

        return (runtime, runtime[kind], recorder);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Malloc_zero_returns_a_distinct_non_null_block(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        void* a = domain.Malloc(0);
        void* b = domain.Malloc(0);
        Assert.True(a != null && b != null);
        Assert.True(a != b);
        Assert.Equal(2, domain.GetStatistics().LiveBlocks);
        domain.Free(a);
        domain.Free(b);
        MemoryAssert.NoLiveBlocks(domain);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Malloc_zero_many_times_gives_pairwise_distinct_blocks(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        var seen = new HashSet<nint>();
        for (int i = 0; i < 1000; i++)
        {
            Assert.True(seen.Add((nint)domain.Malloc(0)));
        }

        foreach (nint p in seen)
        {
            domain.Free((void*)p);
        }

        MemoryAssert.NoLiveBlocks(domain);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Calloc_zero_count_returns_a_distinct_non_null_block(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        void* a = domain.Calloc(0, 8);
        void* b = domain.Calloc(0, 8);
        Assert.True(a != null && b != null && a != b);
        domain.Free(a);
        domain.Free(b);
        MemoryAssert.NoLiveBlocks(domain);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Calloc_zero_size_returns_a_distinct_non_null_block(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        void* a = domain.Calloc(8, 0);
        void* b = domain.Calloc(0, 0);
        Assert.True(a != null && b != null && a != b);
        domain.Free(a);
        domain.Free(b);
        MemoryAssert.NoLiveBlocks(domain);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Calloc_returns_zeroed_memory(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);

        // Dirty some memory first so a non-zeroing calloc would likely be caught.
        void* dirty = domain.Malloc(4096);
        Blocks.Fill(dirty, 4096, 0xAB);
        domain.Free(dirty);

        void* p = domain.Calloc(512, 8);
        Assert.True(p != null);
        Assert.True(Blocks.IsZero(p, 4096));
        Assert.Equal(TestRuntimes.Accounted(domain, 4096), domain.GetStatistics().LiveBytes);
        domain.Free(p);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Calloc_passes_count_and_size_to_the_allocator_unchanged(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, recorder) = Setup(allocator, kind, record: true);
        void* p = domain.Calloc(2, 5);
        RecordedCall call = Assert.Single(recorder.GetSnapshot());
        Assert.Equal((AllocatorOperation.Calloc, (nuint)2, (nuint)5, (nint)p), (call.Operation, call.Count, call.Size, call.Result));
        domain.Free(p);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Realloc_of_null_is_malloc(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, recorder) = Setup(allocator, kind, record: true);
        void* p = domain.Realloc(null, 42);
        Assert.True(p != null);
        RecordedCall call = Assert.Single(recorder.GetSnapshot());
        Assert.Equal((AllocatorOperation.Malloc, (nuint)42), (call.Operation, call.Size));
        DomainStatistics s = domain.GetStatistics();
        Assert.Equal((1, 1, TestRuntimes.Accounted(domain, 42), 0), (s.Allocations, s.LiveBlocks, s.LiveBytes, s.Reallocations));
        domain.Free(p);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Realloc_to_zero_resizes_and_returns_non_null(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        void* p = domain.Malloc(100);
        void* q = domain.Realloc(p, 0);
        Assert.True(q != null);
        DomainStatistics s = domain.GetStatistics();
        Assert.Equal((1, TestRuntimes.Accounted(domain, 0), 1), (s.LiveBlocks, s.LiveBytes, s.Reallocations));
        domain.Free(q);
        MemoryAssert.NoLiveBlocks(domain);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Realloc_keeps_contents_when_growing(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        void* p = domain.Malloc(64);
        Blocks.Fill(p, 64, 3);
        void* q = domain.Realloc(p, 1 << 20);
        Assert.True(q != null);
        Assert.True(Blocks.Holds(q, 64, 3));
        Assert.Equal(TestRuntimes.Accounted(domain, 1 << 20), domain.GetStatistics().LiveBytes);
        domain.Free(q);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Realloc_keeps_contents_when_shrinking(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        void* p = domain.Malloc(4096);
        Blocks.Fill(p, 4096, 9);
        void* q = domain.Realloc(p, 10);
        Assert.True(Blocks.Holds(q, 10, 9));
        Assert.Equal(10, domain.GetStatistics().LiveBytes); // a block above 512 bytes stays with the system allocator, accounted exactly
        domain.Free(q);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Failed_realloc_returns_null_and_leaves_the_old_block_valid(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        void* p = domain.Malloc(32);
        Blocks.Fill(p, 32, 5);
        var failing = new FailingAllocator().FailOnly(1);
        domain.InstallHook(failing);

        Assert.True(domain.Realloc(p, 64) == null);

        Assert.True(Blocks.Holds(p, 32, 5));
        DomainStatistics s = domain.GetStatistics();
        Assert.Equal((1, TestRuntimes.Accounted(domain, 32), 0, 1), (s.LiveBlocks, s.LiveBytes, s.Reallocations, s.Failures));
        void* q = domain.Realloc(p, 64); // the next request succeeds, from the same old block
        Assert.True(q != null && Blocks.Holds(q, 32, 5));
        domain.Free(q);
        MemoryAssert.NoLiveBlocks(domain);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Realloc_above_the_limit_returns_null_and_leaves_the_old_block_valid(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, recorder) = Setup(allocator, kind, record: true);
        void* p = domain.Malloc(32);
        Blocks.Fill(p, 32, 1);
        recorder.Clear();

        Assert.True(domain.Realloc(p, AboveMax) == null);
        Assert.True(domain.Realloc(p, nuint.MaxValue) == null);

        Assert.Equal(0, recorder.Count);
        Assert.True(Blocks.Holds(p, 32, 1));
        domain.Free(p);
        MemoryAssert.NoLiveBlocks(domain);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Realloc_that_the_allocator_cannot_satisfy_returns_null_and_leaves_the_old_block_valid(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        void* p = domain.Malloc(48);
        Blocks.Fill(p, 48, 4);

        Assert.True(domain.Realloc(p, (nuint)nint.MaxValue) == null); // passes the front door, fails in the C runtime

        Assert.True(Blocks.Holds(p, 48, 4));
        DomainStatistics s = domain.GetStatistics();
        Assert.Equal((1, TestRuntimes.Accounted(domain, 48), 1), (s.LiveBlocks, s.LiveBytes, s.Failures));
        domain.Free(p);
        MemoryAssert.NoLiveBlocks(domain);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void An_allocator_that_throws_gets_a_null_return_and_the_fault_is_recorded(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        Assert.Null(domain.LastFault);
        domain.InstallHook(new ThrowingHook());

        Assert.True(domain.Malloc(8) == null);
        Assert.True(domain.Calloc(2, 8) == null);
        Assert.True(domain.Realloc(null, 8) == null);

        AllocatorFaultException fault = Assert.IsType<AllocatorFaultException>(domain.LastFault);
        Assert.Contains("'throwing'", fault.Message);
        Assert.Contains($"{kind.ToName()} domain", fault.Message);
        Assert.IsType<InvalidOperationException>(fault.InnerException);
        Assert.Equal(3, domain.GetStatistics().Failures);
    }

    private sealed class ThrowingHook : MemoryHook
    {
        public override string Name => "throwing";

        public override void* Malloc(nuint size) => throw new InvalidOperationException("a buggy hook");

        public override void* Calloc(nuint count, nuint size) => throw new InvalidOperationException("a buggy hook");
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Free_of_null_does_nothing(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, recorder) = Setup(allocator, kind, record: true);
        domain.Free(null);
        Assert.Equal(0, recorder.Count);
        DomainStatistics s = domain.GetStatistics();
        Assert.Equal((0, 0), (s.Frees, s.LiveBlocks));
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Malloc_above_nint_max_returns_null_without_calling_the_allocator(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, recorder) = Setup(allocator, kind, record: true);
        Assert.True(domain.Malloc(AboveMax) == null);
        Assert.True(domain.Malloc(nuint.MaxValue) == null);
        Assert.Equal(0, recorder.Count);
        Assert.Equal(2, domain.GetStatistics().Failures);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Malloc_of_nint_max_reaches_the_allocator_and_fails_with_null(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, recorder) = Setup(allocator, kind, record: true);
        Assert.True(domain.Malloc((nuint)nint.MaxValue) == null);
        RecordedCall call = Assert.Single(recorder.GetSnapshot());
        Assert.Equal(((nuint)nint.MaxValue, (nint)0), (call.Size, call.Result));
        Assert.Equal(1, domain.GetStatistics().Failures);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Calloc_whose_product_overflows_returns_null_without_calling_the_allocator(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, recorder) = Setup(allocator, kind, record: true);
        Assert.True(domain.Calloc((nuint)1 << 32, ((nuint)1 << 32) + 1) == null);
        Assert.True(domain.Calloc(nuint.MaxValue, 2) == null);
        Assert.True(domain.Calloc(2, nuint.MaxValue) == null);
        Assert.Equal(0, recorder.Count);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Calloc_whose_product_exceeds_nint_max_returns_null_without_calling_the_allocator(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, recorder) = Setup(allocator, kind, record: true);
        nuint half = ((nuint)nint.MaxValue / 2) + 1; // 2 × half = nint.MaxValue + 1: fits in nuint, exceeds the limit
        Assert.True(domain.Calloc(2, half) == null);
        Assert.Equal(0, recorder.Count);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Every_block_is_16_byte_aligned(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        var blocks = new List<nint>();
        for (nuint size = 0; size <= 1100; size += 1)
        {
            blocks.Add((nint)domain.Malloc(size));
        }

        blocks.Add((nint)domain.Calloc(3, 7));
        blocks.Add((nint)domain.Malloc(3 << 20));
        blocks[10] = (nint)domain.Realloc((void*)blocks[10], 5000);
        foreach (nint p in blocks)
        {
            Assert.True(p != 0 && Blocks.IsAligned((void*)p), $"block 0x{p:x} is not 16-byte aligned");
        }

        foreach (nint p in blocks)
        {
            domain.Free((void*)p);
        }

        MemoryAssert.NoLiveBlocks(domain);
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void An_allocator_failure_is_a_null_return_not_an_exception(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        domain.InstallHook(new FailingAllocator().FailFrom(1));
        Assert.True(domain.Malloc(16) == null);
        Assert.True(domain.Calloc(4, 4) == null);
        Assert.True(domain.Realloc(null, 16) == null);
        DomainStatistics s = domain.GetStatistics();
        Assert.Equal((3, 0, 0), (s.Failures, s.Allocations, s.LiveBlocks));
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsAndDomains))]
    public void Malloc_returns_writable_memory_of_the_requested_size(string allocator, MemoryDomainKind kind)
    {
        var (_, domain, _) = Setup(allocator, kind);
        foreach (nuint size in new nuint[] { 1, 15, 16, 17, 511, 512, 513, 4096, 1 << 20 })
        {
            void* p = domain.Malloc(size);
            Blocks.Fill(p, size, (byte)size);
            Assert.True(Blocks.Holds(p, size, (byte)size));
            domain.Free(p);
        }

        MemoryAssert.NoLiveBlocks(domain);
    }
}
