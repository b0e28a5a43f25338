namespace Runtime.Memory;

/// <summary>
/// One snapshot of everything the memory service counts: per domain (with its budget and, on the small-object
/// allocator, its arenas, pools and size classes), per library tag, the tracer and the debug hooks. The host's
/// report, the <c>Runtime.Memory</c> metrics and the tests all read this one object, so they cannot disagree.
/// </summary>
/// <remarks>
/// Immutable. Each part is read in turn, so figures of different parts can be from slightly different moments while
/// threads allocate; every part is exact when none does (see <see cref="DomainStatistics"/> for the details).
/// </remarks>
/// <param name="AllocatorName">The configured allocator name (<c>default</c>, <c>malloc</c>, ...).</param>
/// <param name="Domains">One entry per domain, in <see cref="MemoryDomainKind"/> order.</param>
public sealed record RuntimeMemoryStatistics(string AllocatorName, IReadOnlyList<DomainStatistics> Domains)
{
    /// <summary>The statistics of one domain.</summary>
    public DomainStatistics this[MemoryDomainKind kind] => Domains[(int)kind];

    /// <summary>Live blocks over all domains.</summary>
    public long LiveBlocks => Domains.Sum(d => d.LiveBlocks);

    /// <summary>Live bytes over all domains.</summary>
    public long LiveBytes => Domains.Sum(d => d.LiveBytes);

    /// <summary>Every library account (<see cref="RuntimeMemory.Tag"/>), ordered by tag.</summary>
    public IReadOnlyList<LibraryStatistics> Libraries { get; init; } = [];

    /// <summary>The tracer: whether it runs and what it holds.</summary>
    public TracingStatistics Tracing { get; init; } = TracingStatistics.Off;

    /// <summary>The debug hooks: violations found and what they keep.</summary>
    public DebugStatistics Debug { get; init; } = DebugStatistics.None;

    /// <summary>The account of <paramref name="tag"/> (ignoring case), or null when no route has used that tag.</summary>
    public LibraryStatistics? Library(string tag) =>
        Libraries.FirstOrDefault(l => string.Equals(l.Tag, tag, StringComparison.OrdinalIgnoreCase));
}

/// <summary>What one library tag's routes hold (<see cref="LibraryAccount"/> read at one moment).</summary>
/// <param name="Tag">The library's tag.</param>
/// <param name="LiveBlocks">Blocks the library holds.</param>
/// <param name="LiveBytes">Bytes the library holds (the sizes it asked for).</param>
/// <param name="PeakBytes">The most bytes it has held at once.</param>
/// <param name="Allocations">Allocations (a realloc counts as one allocation and one free).</param>
/// <param name="Frees">Frees.</param>
/// <param name="BytesAllocated">Bytes asked for over the library's life.</param>
/// <param name="Failures">Requests that returned null, for any reason.</param>
/// <param name="LimitRefusals">The part of <paramref name="Failures"/> that the tag's budget refused.</param>
/// <param name="MaxBytes">The tag's budget, or null for none.</param>
public sealed record LibraryStatistics(
    string Tag, long LiveBlocks, long LiveBytes, long PeakBytes, long Allocations, long Frees, long BytesAllocated,
    long Failures, long LimitRefusals, long? MaxBytes)
{
    internal static LibraryStatistics Of(LibraryAccount a) =>
        new(a.Tag, a.LiveBlocks, a.LiveBytes, a.PeakBytes, a.Allocations, a.Frees, a.BytesAllocated, a.Failures, a.LimitRefusals, a.MaxBytes);
}

/// <summary>The tracer at one moment (<see cref="Tracing.MemoryTracer"/>).</summary>
/// <param name="IsTracing">Whether tracing runs.</param>
/// <param name="Frames">Frames kept per traceback (0 when off).</param>
/// <param name="SampleBytes">The sampling interval (0: every block traced).</param>
/// <param name="TracedBlocks">Blocks traced now.</param>
/// <param name="TracedBytes">Traced memory now (tracemalloc's <c>get_traced_memory()[0]</c>).</param>
/// <param name="PeakTracedBytes">Peak traced memory since tracing started or the peak was reset.</param>
/// <param name="TracingMemory">Bytes the tracing itself uses.</param>
/// <param name="TraceFailures">Traces that could not be stored (their blocks were served untraced).</param>
public sealed record TracingStatistics(
    bool IsTracing, int Frames, long SampleBytes, long TracedBlocks, long TracedBytes, long PeakTracedBytes, long TracingMemory, long TraceFailures)
{
    /// <summary>Tracing off.</summary>
    public static TracingStatistics Off { get; } = new(false, 0, 0, 0, 0, 0, 0, 0);
}

/// <summary>The debug hooks at one moment (<see cref="MemoryDebugger"/>).</summary>
/// <param name="HookedDomains">Domains with the debug hooks installed.</param>
/// <param name="Violations">Misuses found since the runtime was created.</param>
/// <param name="LiveBlocks">Blocks the hooks are guarding now.</param>
/// <param name="ShadowBytes">Bytes of the hooks' shadow map.</param>
public sealed record DebugStatistics(IReadOnlyList<MemoryDomainKind> HookedDomains, long Violations, long LiveBlocks, long ShadowBytes)
{
    /// <summary>No debug hook installed and nothing found.</summary>
    public static DebugStatistics None { get; } = new([], 0, 0, 0);
}

/// <summary>The parts of a <see cref="RuntimeMemoryStatistics"/> a reader needs (internal: the public snapshot has all).</summary>
[Flags]
internal enum StatisticsParts
{
    /// <summary>The domains' counters and budgets: always read.</summary>
    Counters = 0,

    /// <summary>Each domain's chain description (<see cref="DomainStatistics.Allocator"/>).</summary>
    Chains = 1,

    /// <summary>The small-object allocators' walk of their arenas and pools.</summary>
    SmallObjects = 2,

    /// <summary>The library accounts.</summary>
    Libraries = 4,

    /// <summary>The tracer's figures.</summary>
    Tracing = 8,

    /// <summary>The debug hooks' violations and hooked domains.</summary>
    Debug = 16,

    /// <summary>The debug hooks' live blocks and shadow size (a scan of the shadow map).</summary>
    DebugBlocks = 32,

    All = Chains | SmallObjects | Libraries | Tracing | Debug | DebugBlocks,
}
