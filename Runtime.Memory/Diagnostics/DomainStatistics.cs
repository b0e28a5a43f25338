namespace Runtime.Memory.Diagnostics;

/// <summary>
/// The accounting of one domain at one moment. Sizes are the sizes callers requested, not what the allocator
/// reserved underneath.
/// </summary>
/// <remarks>
/// All figures are exact when no thread is allocating in the domain, including when blocks were freed on other
/// threads than the ones that allocated them. Read while other threads allocate, each figure is a recent value and
/// the figures may be from slightly different moments. <see cref="PeakBytes"/> is exact while a single thread has
/// used the domain; once T threads have, it is within (T − 1) × 64 KiB of the true high-water mark whatever the block
/// sizes (a thread's unpublished change stays below 64 KiB: larger growth is published at once), and it is never
/// below the <see cref="LiveBytes"/> of the same read.
/// </remarks>
/// <param name="Domain">Which domain.</param>
/// <param name="Allocator">The allocator chain, top first (<c>hook &gt; malloc</c>).</param>
/// <param name="LiveBlocks">Blocks allocated and not yet freed.</param>
/// <param name="LiveBytes">Requested bytes of the live blocks.</param>
/// <param name="PeakBytes">Highest <see cref="LiveBytes"/> since the domain was created.</param>
/// <param name="Allocations">Blocks created (malloc, calloc, realloc of null).</param>
/// <param name="Frees">Blocks freed.</param>
/// <param name="Reallocations">Successful reallocs of existing blocks.</param>
/// <param name="Failures">Requests that returned null: rejected sizes, allocator failures and budget refusals.</param>
/// <param name="BytesAllocated">Total bytes requested over the domain's life, including realloc growth.</param>
public sealed record DomainStatistics(
    MemoryDomainKind Domain,
    string Allocator,
    long LiveBlocks,
    long LiveBytes,
    long PeakBytes,
    long Allocations,
    long Frees,
    long Reallocations,
    long Failures,
    long BytesAllocated)
{
    /// <summary>The part of <see cref="Failures"/> that the domain's budget refused (<see cref="MemoryDomain.MaxBytes"/>).</summary>
    public long LimitRefusals { get; init; }

    /// <summary>The domain's budget when read, or <see langword="null"/> for none.</summary>
    public long? MaxBytes { get; init; }

    /// <summary>
    /// The small-object allocator's arenas, pools and size classes (CPython's <c>sys._debugmallocstats()</c>) when the
    /// domain's base allocator is the small-object allocator; null otherwise.
    /// </summary>
    public SmallObjectStatistics? SmallObjects { get; init; }

    /// <summary>
    /// Bytes of freed blocks the domain's debug hook holds in its quarantine (<c>RuntimeMemory:Debug:QuarantineBytes</c>),
    /// data and guard bytes: live to the OS, dead to the program, so not in <see cref="LiveBytes"/> nor in the budget.
    /// 0 without the debug hooks.
    /// </summary>
    public long QuarantinedBytes { get; init; }

    /// <summary>Freed blocks held in the domain's quarantine (see <see cref="QuarantinedBytes"/>).</summary>
    public long QuarantinedBlocks { get; init; }

    /// <summary>Requests that returned null for want of memory: <see cref="Failures"/> less <see cref="LimitRefusals"/>.</summary>
    public long OutOfMemoryFailures => Failures - LimitRefusals;
}
