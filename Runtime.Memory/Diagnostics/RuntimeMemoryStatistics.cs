namespace Runtime.Memory.Diagnostics;

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
