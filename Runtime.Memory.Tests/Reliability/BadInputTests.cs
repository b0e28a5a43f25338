using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging.Abstractions;
using Runtime.Memory.Hosting;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;
using Runtime.Memory.Tracing;

namespace Runtime.Memory.Tests.Reliability;

/// <summary>
/// Bad input at every public entry point, on every allocator name: pointers the caller had no right to pass (under the
/// debug hooks, which must report each one precisely and never touch it), sizes at and beyond the limits, calloc
/// products that overflow, and snapshot files cut short or damaged. The detection matrix
/// (<see cref="Debug.DetectionMatrixTests"/>) pins the report text of the common misuses on malloc and pymalloc; this
/// class covers what it leaves out: realloc and the lookup queries, misaligned and stack pointers, the
/// <c>debug</c> and <c>mimalloc_debug</c> names, the Log action, and the size edges on every name.
/// </summary>
public sealed unsafe class BadInputTests
{
    // ---- shared ------------------------------------------------------------------------------------------------

    /// <summary>The allocator names that install the debug hooks (<see cref="AllocatorNames.IsDebug"/>).</summary>
    private static readonly string[] DebugNames = AllocatorNames.All.Where(AllocatorNames.IsDebug).ToArray();

    private static readonly nuint TwoTo31 = (nuint)1 << 31;
    private static readonly nuint TwoTo63 = (nuint)1 << 63;

    /// <summary>
    /// Whether the 2^31-byte case runs for this name and domain: on every name without the debug hooks (the block is
    /// reserved, and only its two end bytes are touched), and under the hooks on one name and domain only
    /// (<c>pymalloc_debug</c>, raw), since the hooks fill all 2 GiB on malloc and on free, which costs seconds and
    /// 2 GiB of resident memory a case.
    /// </summary>
    private static bool RunsLargeCase(string allocator, MemoryDomainKind kind) =>
        !AllocatorNames.IsDebug(allocator) || (allocator == AllocatorNames.PymallocDebug && kind == MemoryDomainKind.Raw);

    /// <summary>A runtime on <paramref name="allocator"/> (any name in <see cref="AllocatorNames.All"/>).</summary>
    private static RuntimeMemory Create(string allocator, ViolationAction onViolation = ViolationAction.Throw, bool tracing = false)
    {
        var options = new RuntimeMemoryOptions
        {
            Allocator = allocator,
            Debug = new RuntimeMemoryDebugOptions { OnViolation = onViolation },
            Tracing = new RuntimeMemoryTracingOptions { Enabled = tracing },
        };

        // A null logger keeps the Log action's reports off the test output; they still reach LastViolation.
        return new RuntimeMemory(new DefaultAllocatorProvider(options), options, NullLoggerFactory.Instance);
    }

    private static MemoryDomainKind Next(MemoryDomainKind kind) =>
        (MemoryDomainKind)(((int)kind + 1) % MemoryDomainKindExtensions.Count);

    /// <summary>What a domain's accounting says, as one comparable value.</summary>
    private static (long Blocks, long Bytes, long Allocations, long Frees, long Reallocations) Figures(MemoryDomain domain)
    {
        DomainStatistics s = domain.GetStatistics();
        return (s.LiveBlocks, s.LiveBytes, s.Allocations, s.Frees, s.Reallocations);
    }

    public sealed class DebugNamesAndDomains : TheoryData<string, MemoryDomainKind>
    {
        public DebugNamesAndDomains()
        {
            foreach (string name in DebugNames)
            {
                foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
                {
                    Add(name, kind);
                }
            }
        }
    }

    public sealed class DebugNamesDomainsAndBadPointers : TheoryData<string, MemoryDomainKind, BadPointer>
    {
        public DebugNamesDomainsAndBadPointers()
        {
            foreach (string name in DebugNames)
            {
                foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
                {
                    foreach (BadPointer bad in Enum.GetValues<BadPointer>())
                    {
                        Add(name, kind, bad);
                    }
                }
            }
        }
    }

    /// <summary>Every allocator name, with and without the debug hooks (<c>default</c> and <c>debug</c> included) × every domain.</summary>
    public sealed class EveryNameAndDomain : TheoryData<string, MemoryDomainKind>
    {
        public EveryNameAndDomain()
        {
            foreach (string name in AllocatorNames.All)
            {
                foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
                {
                    Add(name, kind);
                }
            }
        }
    }

    // ---- bad pointers under the debug hooks --------------------------------------------------------------------

    /// <summary>The kinds of pointer a caller must not pass to free or realloc.</summary>
    public enum BadPointer
    {
        /// <summary>A block from <see cref="NativeMemory.Alloc(nuint)"/>: another allocator's.</summary>
        ForeignHeap,

        /// <summary>A 16-byte aligned address in a stack buffer.</summary>
        ForeignStack,

        /// <summary>8 bytes into a live 64-byte block.</summary>
        Interior,

        /// <summary>1 byte into a live 64-byte block: not even aligned.</summary>
        Misaligned,

        /// <summary>A block of this domain already freed.</summary>
        Freed,

        /// <summary>A live block of the next domain.</summary>
        WrongDomain,
    }

    /// <summary>
    /// One bad pointer set up in a runtime, what the hooks must say about it, and the real block behind it (if any),
    /// filled with a pattern so that the test can see it was not touched.
    /// </summary>
    private sealed class Scenario : IDisposable
    {
        private const int BlockSize = 64;
        private const byte Seed = 0x31;
        private readonly byte* _foreign;
        private readonly MemoryDomain? _owner;

        public Scenario(RuntimeMemory runtime, MemoryDomainKind kind, BadPointer bad, byte* stack)
        {
            Kind = kind;
            Bad = bad;
            switch (bad)
            {
                case BadPointer.ForeignHeap:
                    _foreign = (byte*)NativeMemory.AlignedAlloc(BlockSize, 16);
                    Blocks.Fill(_foreign, BlockSize, Seed);
                    Pointer = _foreign;
                    break;

                case BadPointer.ForeignStack:
                    Blocks.Fill(stack, BlockSize, Seed);
                    _foreign = stack;
                    Pointer = stack;
                    break;

                case BadPointer.Freed:
                    Pointer = (byte*)runtime[kind].Malloc(BlockSize);
                    runtime[kind].Free(Pointer);
                    break;

                default:
                    _owner = bad == BadPointer.WrongDomain ? runtime[Next(kind)] : runtime[kind];
                    Block = (byte*)_owner.Malloc(BlockSize);
                    Blocks.Fill(Block, BlockSize, Seed);
                    Pointer = Block + bad switch
                    {
                        BadPointer.Interior => 8,
                        BadPointer.Misaligned => 1,
                        _ => 0,
                    };
                    break;
            }
        }

        public MemoryDomainKind Kind { get; }

        public BadPointer Bad { get; }

        /// <summary>The pointer to pass.</summary>
        public byte* Pointer { get; }

        /// <summary>The live block the pointer is (or lies in), or null.</summary>
        public byte* Block { get; }

        public MemoryViolationKind ExpectedKind => Bad switch
        {
            BadPointer.ForeignHeap or BadPointer.ForeignStack => MemoryViolationKind.UnknownPointer,
            BadPointer.Interior or BadPointer.Misaligned => MemoryViolationKind.InteriorPointer,
            BadPointer.Freed => MemoryViolationKind.AlreadyFreed,
            _ => MemoryViolationKind.WrongDomain,
        };

        /// <summary>The part of the report's first line that names the misuse.</summary>
        public string ExpectedHeadline(MemoryOperation operation) => Bad switch
        {
            BadPointer.ForeignHeap or BadPointer.ForeignStack => "a pointer this runtime's debug hooks never returned",
            BadPointer.Interior => "interior pointer (8 bytes after the start of a block, not its start)",
            BadPointer.Misaligned => "interior pointer (1 byte after the start of a block, not its start)",
            BadPointer.Freed when operation == MemoryOperation.Free => "double free (the block was freed already)",
            BadPointer.Freed => "realloc of a freed block (the block was freed already)",
            _ => $"bad ID: Allocated using API '{(char)Next(Kind).ToApiId()}', verified using API '{(char)Kind.ToApiId()}'",
        };

        /// <summary>Checks every field of <paramref name="violation"/> against what this pointer is.</summary>
        public void AssertReport(MemoryViolation violation, MemoryOperation operation)
        {
            string op = operation == MemoryOperation.Free ? "free" : "realloc";
            Assert.Equal(ExpectedKind, violation.Kind);
            Assert.Equal(operation, violation.Operation);
            Assert.Equal(Kind, violation.Domain);
            Assert.Equal((nuint)Pointer, violation.Address);
            Assert.StartsWith($"Memory violation in {op} through the {Kind.ToName()} domain: ", violation.Summary);
            Assert.Contains(ExpectedHeadline(operation), violation.Summary);
            Assert.Contains($"p={ViolationReport.Address((nuint)Pointer)}", violation.Report);
            switch (Bad)
            {
                case BadPointer.ForeignHeap or BadPointer.ForeignStack:
                    Assert.Null(violation.AllocatedBy);
                    Assert.Null(violation.RequestedSize);
                    Assert.Contains(": unknown\n", violation.Report);
                    break;

                case BadPointer.Freed:
                    Assert.Equal(Kind, violation.AllocatedBy);
                    Assert.Equal((nuint)BlockSize, violation.RequestedSize); // still in the quarantine, which keeps it
                    Assert.NotNull(violation.Serial);
                    Assert.Contains("The block was freed already and is still in the quarantine", violation.Report);
                    Assert.Contains($"    {BlockSize} bytes originally requested\n", violation.Report);
                    break;

                default:
                    Assert.Equal(_owner!.Kind, violation.AllocatedBy);
                    Assert.Equal((nuint)BlockSize, violation.RequestedSize);
                    Assert.Contains($"    {BlockSize} bytes originally requested\n", violation.Report);
                    Assert.NotNull(violation.Serial);
                    break;
            }
        }

        /// <summary>The memory behind the pointer holds what was written before the misuse.</summary>
        public void AssertUntouched()
        {
            if (_foreign != null)
            {
                Assert.True(Blocks.Holds(_foreign, BlockSize, Seed), "the foreign memory was written to");
            }

            if (Block != null)
            {
                Assert.True(Blocks.Holds(Block, BlockSize, Seed), "the live block was written to");
            }
        }

        /// <summary>Frees the real block through its own domain, which must still accept it.</summary>
        public void FreeTheRealBlock()
        {
            if (Block != null)
            {
                _owner!.Free(Block);
            }
        }

        public void Dispose()
        {
            if (Bad == BadPointer.ForeignHeap)
            {
                NativeMemory.AlignedFree(_foreign);
            }
        }
    }

    /// <summary>A 64-byte area of <paramref name="buffer"/> (at least 80 bytes) at a 16-byte boundary.</summary>
    private static byte* Aligned16(byte* buffer) => (byte*)(((nuint)buffer + 15) & ~(nuint)15);

    /// <summary>
    /// Free and realloc of each bad pointer, through each domain of each debug name, under the Throw action: the
    /// violation names the misuse, the domain, the pointer and (when there is one) the block it concerns; the memory
    /// is not touched; a refused free is not counted as a free; the real block can still be freed by its owner.
    /// </summary>
    [SkippableTheory, ClassData(typeof(DebugNamesDomainsAndBadPointers))]
    public void Free_and_realloc_of_a_bad_pointer_are_reported_precisely_and_touch_nothing(string allocator, MemoryDomainKind kind, BadPointer bad)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        byte* stack = stackalloc byte[80];
        using RuntimeMemory runtime = Create(allocator);
        using var scenario = new Scenario(runtime, kind, bad, Aligned16(stack));
        MemoryDomain domain = runtime[kind];
        var before = Figures(domain);

        MemoryViolation onFree = DebugRuntimes.Catch(() => domain.Free(scenario.Pointer));
        scenario.AssertReport(onFree, MemoryOperation.Free);
        Assert.Equal(before, Figures(domain)); // the refused free is not counted
        scenario.AssertUntouched();

        MemoryViolation onRealloc = DebugRuntimes.Catch(() => domain.Realloc(scenario.Pointer, 128));
        scenario.AssertReport(onRealloc, MemoryOperation.Realloc);
        Assert.Equal(before, Figures(domain));
        scenario.AssertUntouched();

        Assert.Equal(2, runtime.Debugger.Violations);
        Assert.Same(onRealloc, runtime.Debugger.LastViolation);

        scenario.FreeTheRealBlock();
        Assert.Equal(2, runtime.Debugger.Violations);
        MemoryAssert.NoLiveBlocks(runtime);
    }

    /// <summary>
    /// The same misuses under the Log action: no exception reaches the caller, the free returns, the realloc returns
    /// null and is counted as a failure, and the violation is recorded with the same kind.
    /// </summary>
    [SkippableTheory, ClassData(typeof(DebugNamesDomainsAndBadPointers))]
    public void Under_log_a_bad_pointer_is_recorded_the_free_returns_and_the_realloc_returns_null(string allocator, MemoryDomainKind kind, BadPointer bad)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        byte* stack = stackalloc byte[80];
        using RuntimeMemory runtime = Create(allocator, ViolationAction.Log);
        using var scenario = new Scenario(runtime, kind, bad, Aligned16(stack));
        MemoryDomain domain = runtime[kind];
        var before = Figures(domain);
        long failures = domain.GetStatistics().Failures;

        domain.Free(scenario.Pointer);
        Assert.Equal(1, runtime.Debugger.Violations);
        scenario.AssertReport(runtime.Debugger.LastViolation!, MemoryOperation.Free);

        Assert.True(domain.Realloc(scenario.Pointer, 128) == null);
        Assert.Equal(2, runtime.Debugger.Violations);
        scenario.AssertReport(runtime.Debugger.LastViolation!, MemoryOperation.Realloc);
        Assert.Equal(failures + 1, domain.GetStatistics().Failures);

        Assert.Equal(before, Figures(domain));
        scenario.AssertUntouched();
        scenario.FreeTheRealBlock();
        MemoryAssert.NoLiveBlocks(runtime);
    }

    /// <summary>
    /// The lookups that take a pointer (the debug hook's <see cref="DebugHook.BlockSize"/>, the tracer's
    /// <see cref="MemoryTracer.GetTraceback(MemoryDomainKind, void*)"/>) answer "nothing" for a bad pointer, report
    /// no violation and touch nothing, while answering for the real block (so the lookups are not simply blind).
    /// </summary>
    [SkippableTheory, ClassData(typeof(DebugNamesDomainsAndBadPointers))]
    public void Lookups_of_a_bad_pointer_answer_nothing_and_report_nothing(string allocator, MemoryDomainKind kind, BadPointer bad)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        byte* stack = stackalloc byte[80];
        using RuntimeMemory runtime = Create(allocator, tracing: true);
        using var scenario = new Scenario(runtime, kind, bad, Aligned16(stack));
        DebugHook hook = runtime[kind].DebugHook!;

        Assert.Equal((nuint)0, hook.BlockSize(scenario.Pointer));
        Assert.Null(runtime.Tracer.GetTraceback(kind, scenario.Pointer));
        if (bad == BadPointer.WrongDomain)
        {
            // Traced, and sized, by the domain that owns it.
            Assert.NotNull(runtime.Tracer.GetTraceback(Next(kind), scenario.Pointer));
            Assert.Equal((nuint)64, runtime[Next(kind)].DebugHook!.BlockSize(scenario.Pointer));
        }
        else
        {
            Assert.Null(runtime.Tracer.GetTraceback(scenario.Pointer));
        }

        if (scenario.Block != null && bad != BadPointer.WrongDomain)
        {
            Assert.Equal((nuint)64, hook.BlockSize(scenario.Block));
            Assert.NotNull(runtime.Tracer.GetTraceback(kind, scenario.Block));
        }

        Assert.Equal(0, runtime.Debugger.Violations);
        scenario.AssertUntouched();
        scenario.FreeTheRealBlock();
        MemoryAssert.NoLiveBlocks(runtime);
    }

    /// <summary>
    /// Null under the debug hooks: free does nothing and reports nothing; realloc is malloc (a fresh block of clean
    /// bytes, counted as an allocation, not a reallocation).
    /// </summary>
    [SkippableTheory, ClassData(typeof(DebugNamesAndDomains))]
    public void Null_is_a_no_op_for_free_and_malloc_for_realloc_under_the_debug_hooks(string allocator, MemoryDomainKind kind)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        using RuntimeMemory runtime = Create(allocator);
        MemoryDomain domain = runtime[kind];

        domain.Free(null);
        Assert.Equal((0L, 0L, 0L, 0L, 0L), Figures(domain));

        byte* p = (byte*)domain.Realloc(null, 40);
        Assert.True(p != null && Blocks.IsAligned(p));
        Assert.False(new ReadOnlySpan<byte>(p, 40).ContainsAnyExcept((byte)0xCD), "a fresh debug block holds CLEANBYTE");
        Assert.Equal((1L, 40L, 1L, 0L, 0L), Figures(domain));
        Assert.Equal((nuint)40, domain.DebugHook!.BlockSize(p));

        domain.Free(p);
        Assert.Equal(0, runtime.Debugger.Violations);
        MemoryAssert.NoLiveBlocks(runtime);
    }

    // ---- sizes at and beyond the limits ------------------------------------------------------------------------

    /// <summary>Sizes every allocation must serve: non-null, aligned, writable, accounted as the allocator counts it.</summary>
    private static readonly nuint[] ServedSizes = [0, 1, 511, 512, 513];

    /// <summary>Sizes above <see cref="MemoryDomain.MaxRequestSize"/>: null, whatever the allocator.</summary>
    private static readonly nuint[] RefusedSizes = [TwoTo63, nuint.MaxValue];

    /// <summary>
    /// Asserts that <paramref name="p"/> is a good block of <paramref name="size"/> bytes and that the domain
    /// accounts exactly it on top of <paramref name="before"/>; frees it and checks the figures go back.
    /// </summary>
    private static void AssertServedAndFree(MemoryDomain domain, void* p, nuint size, long bytesBefore, string what)
    {
        Assert.True(p != null, $"{what}: null");
        Assert.True(Blocks.IsAligned(p), $"{what}: not 16-byte aligned");
        Assert.Equal(bytesBefore + TestRuntimes.Accounted(domain, size), domain.LiveBytes);
        domain.Free(p);
        Assert.Equal(bytesBefore, domain.LiveBytes);
    }

    /// <summary>
    /// 2^31 bytes is a legal request (below <c>nint.MaxValue</c>), which the machine may or may not grant: either a
    /// block whose first and last bytes are usable, accounted exactly, or a null counted as a failure with nothing
    /// else changed. Both outcomes are what the domain documents; anything else (an exception, a wrong count) fails.
    /// </summary>
    private static void AssertLargeOutcome(MemoryDomain domain, byte* p, bool zeroed, string what)
    {
        if (p == null)
        {
            return; // the caller checked the failure count
        }

        long liveBytes = domain.LiveBytes;
        Assert.True(Blocks.IsAligned(p), $"{what}: not 16-byte aligned");
        if (zeroed)
        {
            Assert.True(p[0] == 0 && p[TwoTo31 - 1] == 0, $"{what}: calloc's block is not zeroed at its ends");
        }

        p[0] = 1;
        p[TwoTo31 - 1] = 2;
        Assert.Equal(TestRuntimes.Accounted(domain, TwoTo31), liveBytes);
        domain.Free(p);
        Assert.Equal(0, domain.LiveBytes);
    }

    /// <summary>
    /// Malloc of 0, 1, 511, 512 (the small-object limit), 513, 2^31, 2^63 and nuint.MaxValue on every name and
    /// domain. Size 0 is a distinct, freeable block (documented on <see cref="MemoryDomain"/>: "as if 1 byte had
    /// been asked for"); sizes above <c>nint.MaxValue</c> are null and change nothing but the failure count.
    /// </summary>
    [SkippableTheory, ClassData(typeof(EveryNameAndDomain))]
    public void Malloc_at_the_size_edges_does_what_the_domain_documents(string allocator, MemoryDomainKind kind)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        using RuntimeMemory runtime = Create(allocator);
        MemoryDomain domain = runtime[kind];

        void* zeroA = domain.Malloc(0);
        void* zeroB = domain.Malloc(0);
        Assert.True(zeroA != null && zeroB != null && zeroA != zeroB, "two Malloc(0) must be distinct non-null blocks");
        domain.Free(zeroB);
        AssertServedAndFree(domain, zeroA, 0, 0, "Malloc(0)");

        foreach (nuint size in ServedSizes)
        {
            byte* p = (byte*)domain.Malloc(size);
            Assert.True(p != null, $"Malloc({size}): null");
            Blocks.Fill(p, size, (byte)size);
            Assert.True(Blocks.Holds(p, size, (byte)size), $"Malloc({size}): not writable");
            AssertServedAndFree(domain, p, size, 0, $"Malloc({size})");
        }

        foreach (nuint size in RefusedSizes)
        {
            var before = Figures(domain);
            long failures = domain.GetStatistics().Failures;
            Assert.True(domain.Malloc(size) == null, $"Malloc({size}) must be null");
            Assert.Equal(before, Figures(domain));
            Assert.Equal(failures + 1, domain.GetStatistics().Failures);
        }

        if (RunsLargeCase(allocator, kind))
        {
            long failuresBeforeLarge = domain.GetStatistics().Failures;
            byte* large = (byte*)domain.Malloc(TwoTo31);
            Assert.Equal(failuresBeforeLarge + (large == null ? 1 : 0), domain.GetStatistics().Failures);
            AssertLargeOutcome(domain, large, zeroed: false, "Malloc(2^31)");
        }

        Assert.Equal(0, runtime.Debugger.Violations);
        MemoryAssert.NoLiveBlocks(runtime);
    }

    /// <summary>
    /// Calloc of the same sizes, as (1, n) and (n, 1): zeroed blocks for the served sizes, null for the refused ones
    /// with the accounting unchanged.
    /// </summary>
    [SkippableTheory, ClassData(typeof(EveryNameAndDomain))]
    public void Calloc_at_the_size_edges_does_what_the_domain_documents(string allocator, MemoryDomainKind kind)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        using RuntimeMemory runtime = Create(allocator);
        MemoryDomain domain = runtime[kind];

        // Dirty the memory first, so that a calloc that does not zero is likely caught.
        void* dirty = domain.Malloc(1024);
        Blocks.Fill(dirty, 1024, 0xAB);
        domain.Free(dirty);

        foreach (nuint size in ServedSizes)
        {
            foreach ((nuint count, nuint each) in new[] { ((nuint)1, size), (size, (nuint)1) })
            {
                void* p = domain.Calloc(count, each);
                Assert.True(p != null, $"Calloc({count}, {each}): null");
                Assert.True(Blocks.IsZero(p, size), $"Calloc({count}, {each}): not zeroed");
                AssertServedAndFree(domain, p, size, 0, $"Calloc({count}, {each})");
            }
        }

        foreach (nuint size in RefusedSizes)
        {
            foreach ((nuint count, nuint each) in new[] { ((nuint)1, size), (size, (nuint)1) })
            {
                var before = Figures(domain);
                long failures = domain.GetStatistics().Failures;
                Assert.True(domain.Calloc(count, each) == null, $"Calloc({count}, {each}) must be null");
                Assert.Equal(before, Figures(domain));
                Assert.Equal(failures + 1, domain.GetStatistics().Failures);
            }
        }

        if (RunsLargeCase(allocator, kind))
        {
            long failuresBeforeLarge = domain.GetStatistics().Failures;
            byte* large = (byte*)domain.Calloc(1, TwoTo31);
            Assert.Equal(failuresBeforeLarge + (large == null ? 1 : 0), domain.GetStatistics().Failures);
            AssertLargeOutcome(domain, large, zeroed: true, "Calloc(1, 2^31)");
        }

        Assert.Equal(0, runtime.Debugger.Violations);
        MemoryAssert.NoLiveBlocks(runtime);
    }

    /// <summary>
    /// Realloc of a filled 64-byte block to each size: a served size keeps the first min(64, n) bytes and is
    /// accounted at its new size; a refused size returns null, and the old block keeps its contents, its accounting
    /// and its usability (it is then freed normally).
    /// </summary>
    [SkippableTheory, ClassData(typeof(EveryNameAndDomain))]
    public void Realloc_at_the_size_edges_keeps_the_data_or_leaves_the_old_block_intact(string allocator, MemoryDomainKind kind)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        using RuntimeMemory runtime = Create(allocator);
        MemoryDomain domain = runtime[kind];
        const byte Seed = 0x40;

        foreach (nuint size in ServedSizes)
        {
            void* p = domain.Malloc(64);
            Blocks.Fill(p, 64, Seed);
            void* q = domain.Realloc(p, size);
            Assert.True(q != null, $"Realloc(p, {size}): null");
            Assert.True(Blocks.Holds(q, Math.Min(size, 64), Seed), $"Realloc(p, {size}): the data was not kept");
            Assert.Equal(1, domain.LiveBlocks);
            AssertServedAndFree(domain, q, size, 0, $"Realloc(p, {size})");
        }

        foreach (nuint size in RefusedSizes)
        {
            void* p = domain.Malloc(64);
            Blocks.Fill(p, 64, Seed);
            var before = Figures(domain);
            long failures = domain.GetStatistics().Failures;

            Assert.True(domain.Realloc(p, size) == null, $"Realloc(p, {size}) must be null");

            Assert.Equal(before, Figures(domain));
            Assert.Equal(failures + 1, domain.GetStatistics().Failures);
            Assert.True(Blocks.Holds(p, 64, Seed), $"Realloc(p, {size}) failed but changed the old block");
            void* grown = domain.Realloc(p, 100); // still a valid block: it can be resized and freed
            Assert.True(grown != null && Blocks.Holds(grown, 64, Seed));
            domain.Free(grown);
        }

        if (RunsLargeCase(allocator, kind))
        {
            void* small = domain.Malloc(64);
            Blocks.Fill(small, 64, Seed);
            long failuresBeforeLarge = domain.GetStatistics().Failures;
            byte* large = (byte*)domain.Realloc(small, TwoTo31);
            if (large == null)
            {
                Assert.Equal(failuresBeforeLarge + 1, domain.GetStatistics().Failures);
                Assert.True(Blocks.Holds(small, 64, Seed), "a failed Realloc(p, 2^31) changed the old block");
                domain.Free(small);
            }
            else
            {
                Assert.True(Blocks.Holds(large, 64, Seed), "Realloc(p, 2^31) did not keep the data");
                AssertLargeOutcome(domain, large, zeroed: false, "Realloc(p, 2^31)");
            }

        }

        Assert.Equal(0, runtime.Debugger.Violations);
        MemoryAssert.NoLiveBlocks(runtime);
    }

    // ---- calloc products -------------------------------------------------------------------------------------

    /// <summary>(count, size) pairs whose product does not fit 64 bits, or exceeds <c>nint.MaxValue</c>.</summary>
    private static readonly (ulong Count, ulong Size)[] OverflowingPairs =
    [
        (ulong.MaxValue, 2),
        (2, ulong.MaxValue),
        (1UL << 32, 1UL << 32),
        (1UL << 63, 2),
        (ulong.MaxValue, ulong.MaxValue),
        (1UL << 62, 2), // 2^63 exactly: fits in nuint, one above nint.MaxValue
    ];

    /// <summary>
    /// Every allocator name × every overflowing pair: one row per name, so that a name whose library is missing
    /// (mimalloc's) is its own row, skipped with the reason, while the other names run.
    /// </summary>
    public static TheoryData<string, ulong, ulong> OverflowingProducts()
    {
        var data = new TheoryData<string, ulong, ulong>();
        foreach (string allocator in AllocatorNames.All)
        {
            foreach ((ulong count, ulong size) in OverflowingPairs)
            {
                data.Add(allocator, count, size);
            }
        }

        return data;
    }

    /// <summary>
    /// Calloc whose count × size overflows (or exceeds the limit) is null on every name (a row each) and domain,
    /// counted as a failure and nothing else, including on a runtime that already holds a block.
    /// </summary>
    [SkippableTheory, MemberData(nameof(OverflowingProducts))]
    public void Calloc_with_an_overflowing_product_is_null_everywhere(string allocator, ulong count64, ulong size64)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        (nuint count, nuint size) = ((nuint)count64, (nuint)size64);
        using RuntimeMemory runtime = Create(allocator);
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            MemoryDomain domain = runtime[kind];
            void* held = domain.Malloc(24);
            var before = Figures(domain);
            long failures = domain.GetStatistics().Failures;

            Assert.True(domain.Calloc(count, size) == null, $"{allocator}/{kind.ToName()}: Calloc({count}, {size}) must be null");

            Assert.Equal(before, Figures(domain));
            Assert.Equal(failures + 1, domain.GetStatistics().Failures);
            domain.Free(held);
        }

        MemoryAssert.NoLiveBlocks(runtime);
    }

    /// <summary>Every allocator name × (0, max), (max, 0), (0, 0).</summary>
    public static TheoryData<string, ulong, ulong> ZeroFactors()
    {
        var data = new TheoryData<string, ulong, ulong>();
        foreach (string allocator in AllocatorNames.All)
        {
            foreach ((ulong count, ulong size) in new[] { (0UL, ulong.MaxValue), (ulong.MaxValue, 0UL), (0UL, 0UL) })
            {
                data.Add(allocator, count, size);
            }
        }

        return data;
    }

    /// <summary>
    /// Calloc with a zero count or size, whatever the other factor (nuint.MaxValue included: 0 × anything does not
    /// overflow), is a distinct non-null block accounted as a zero-byte request and freeable (documented on
    /// <see cref="MemoryDomain"/>). One row per name, as for the overflowing products.
    /// </summary>
    [SkippableTheory, MemberData(nameof(ZeroFactors))]
    public void Calloc_with_a_zero_factor_is_a_distinct_block_everywhere(string allocator, ulong count, ulong size)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        using RuntimeMemory runtime = Create(allocator);
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            MemoryDomain domain = runtime[kind];
            void* a = domain.Calloc((nuint)count, (nuint)size);
            void* b = domain.Calloc((nuint)count, (nuint)size);
            string what = $"{allocator}/{kind.ToName()}: Calloc({count}, {size})";
            Assert.True(a != null && b != null && a != b, $"{what} must give distinct non-null blocks");
            Assert.True(Blocks.IsAligned(a) && Blocks.IsAligned(b), $"{what}: not 16-byte aligned");
            Assert.Equal(2 * TestRuntimes.Accounted(domain, 0), domain.LiveBytes);
            Assert.Equal(0, domain.GetStatistics().Failures);
            domain.Free(a);
            domain.Free(b);
        }

        Assert.Equal(0, runtime.Debugger.Violations);
        MemoryAssert.NoLiveBlocks(runtime);
    }

    // ---- snapshot files cut short or damaged -----------------------------------------------------------------
    //
    // TraceSnapshotTests checks one flipped byte and two truncations. Here: every possible truncation, and damage
    // the checksum cannot see (the file rewritten with a matching checksum), which only the loader's structural
    // checks catch.

    /// <summary>A small snapshot with names, several tracebacks and traces, dumped to a file; returns its bytes.</summary>
    private static byte[] DumpSample(string path)
    {
        var main = new Traceback([new Frame("main.lua", 10, "main")]);
        var helper = new Traceback([new Frame("main.lua", 12, "main"), new Frame("util.lua", 5, "helper")], 4);
        var snapshot = new TraceSnapshot(
            [new Trace(0, 4096, main, 2), new Trace(1, 100, helper, 10), new Trace(2, 48, main)],
            tracebackLimit: 3);
        snapshot.Dump(path);
        return File.ReadAllBytes(path);
    }

    private static string Refusal(string path, byte[] bytes)
    {
        File.WriteAllBytes(path, bytes);
        return Assert.Throws<InvalidDataException>(() => TraceSnapshot.Load(path)).Message;
    }

    /// <summary>The file's header with its body length and checksum recomputed, as a careful forger would.</summary>
    private static byte[] Resealed(byte[] file)
    {
        const int HeaderSize = 28;
        byte[] copy = (byte[])file.Clone();
        BitConverter.TryWriteBytes(copy.AsSpan(12), (long)(copy.Length - HeaderSize));
        ulong hash = 0xCBF2_9CE4_8422_2325UL;
        foreach (byte b in copy.AsSpan(HeaderSize))
        {
            hash = (hash ^ b) * 0x0000_0100_0000_01B3UL;
        }

        BitConverter.TryWriteBytes(copy.AsSpan(20), hash);
        return copy;
    }

    /// <summary>
    /// A dump cut at every length from 0 to one byte short is refused with an <see cref="InvalidDataException"/>
    /// naming the file and saying what is wrong: not a snapshot (no full magic), a short header, or a body shorter
    /// than the header announces. Never another exception, never a partial snapshot.
    /// </summary>
    [Fact]
    public void A_dump_cut_at_any_length_is_refused_saying_so()
    {
        string path = Path.Combine(Path.GetTempPath(), $"rtm-bad-{Guid.NewGuid():N}.trace");
        try
        {
            byte[] good = DumpSample(path);
            Assert.Equal(3, TraceSnapshot.Load(path).Traces.Count);
            for (int length = 0; length < good.Length; length++)
            {
                string message = Refusal(path, good[..length]);
                Assert.StartsWith(path, message);
                string expected = length switch
                {
                    < 8 => "is not a RuntimeMem trace snapshot",
                    < 28 => $"is truncated: {length} bytes, shorter than the 28-byte header",
                    _ => $"is truncated or damaged: its header announces {good.Length - 28} bytes of traces, the file holds {length - 28}",
                };
                Assert.True(message.Contains(expected, StringComparison.Ordinal), $"cut at {length}: \"{message}\" does not say \"{expected}\"");
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// Damage behind a valid checksum: a count larger than the file, an index outside its table, bytes after the last
    /// trace, a body cut and resealed. Each is refused as damaged, naming what was wrong, before anything is built
    /// from it.
    /// </summary>
    [Fact]
    public void A_resealed_dump_with_damaged_structure_is_refused_saying_what()
    {
        string path = Path.Combine(Path.GetTempPath(), $"rtm-bad-{Guid.NewGuid():N}.trace");
        try
        {
            byte[] good = DumpSample(path);
            Assert.Equal(3, TraceSnapshot.Load(path).Traces.Count);
            Assert.Equal(good, Resealed(good)); // the forger's seal is the real one

            byte[] hugeNames = (byte[])good.Clone();
            BitConverter.TryWriteBytes(hugeNames.AsSpan(28 + 4 + 8), int.MaxValue); // names count, after limit and sample bytes
            Assert.Contains("is damaged: a count of names of 2147483647, more than the", Refusal(path, Resealed(hugeNames)));

            byte[] negativeNames = (byte[])good.Clone();
            BitConverter.TryWriteBytes(negativeNames.AsSpan(28 + 4 + 8), -1);
            Assert.Contains("is damaged: a count of names of -1", Refusal(path, Resealed(negativeNames)));

            byte[] badTraceback = (byte[])good.Clone();
            BitConverter.TryWriteBytes(badTraceback.AsSpan(good.Length - 4), 7); // the last trace's traceback index
            Assert.Contains("is damaged: a traceback index 7 outside 0..1", Refusal(path, Resealed(badTraceback)));

            Assert.Contains("is damaged: 3 bytes follow the last trace", Refusal(path, Resealed([.. good, 1, 2, 3])));

            for (int cut = 1; cut < good.Length - 28; cut++)
            {
                string message = Refusal(path, Resealed(good[..^cut]));
                Assert.StartsWith($"{path} is damaged: ", message);
            }
        }
        finally
        {
            File.Delete(path);
        }
    }
}
