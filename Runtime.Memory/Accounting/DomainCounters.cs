using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Accounting;

/// <summary>
/// One thread's counters for one domain. Written only by the owning thread with plain stores; other threads
/// only read them (64-bit reads are atomic on 64-bit platforms). Every field but <see cref="PendingLive"/> only
/// grows, so the sum over all threads is exact whichever thread allocated or freed a block.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal struct DomainCounters
{
    /// <summary>Blocks created: malloc, calloc and realloc(null).</summary>
    public long Allocations;

    /// <summary>Blocks released by free.</summary>
    public long Frees;

    /// <summary>Successful reallocs of an existing block.</summary>
    public long Reallocations;

    /// <summary>Requests that returned null: rejected sizes, allocator failures and budget refusals.</summary>
    public long Failures;

    /// <summary>The part of <see cref="Failures"/> that the domain's budget refused (<see cref="PeakTracker.Limit"/>).</summary>
    public long LimitRefusals;

    /// <summary>Bytes requested by created blocks plus the growth of reallocs.</summary>
    public long BytesAllocated;

    /// <summary>Bytes of freed blocks plus the shrinkage of reallocs.</summary>
    public long BytesFreed;

    /// <summary>
    /// Live-byte change on this thread not yet published to the domain's <see cref="PeakTracker"/>
    /// (signed; see <see cref="MemoryAccounting.PublishThreshold"/>).
    /// </summary>
    public long PendingLive;

    public void Add(in DomainCounters other)
    {
        Allocations += other.Allocations;
        Frees += other.Frees;
        Reallocations += other.Reallocations;
        Failures += other.Failures;
        LimitRefusals += other.LimitRefusals;
        BytesAllocated += other.BytesAllocated;
        BytesFreed += other.BytesFreed;
        PendingLive += other.PendingLive;
    }
}

/// <summary>The counters of the three domains, inline in one per-thread object.</summary>
[InlineArray(MemoryAccounting.AccountCount)]
internal struct DomainCountersByKind
{
    private DomainCounters _element;
}

/// <summary>
/// One domain's published live bytes, peak and budget, alone on a 64-byte cache line so that the rare writes to it
/// do not disturb the neighbouring domains.
/// </summary>
/// <remarks>
/// Invariant: <see cref="Gate"/> is at most <c>min(</c><see cref="Peak"/><c>, </c><see cref="Limit"/><c>)</c>, and
/// <see cref="long.MinValue"/> while a refusal episode is open, once every writer has finished
/// (<see cref="MemoryAccounting"/>'s <c>RefreshGate</c> rewrites it until it holds). Growth whose estimate stays at
/// or below the gate needs nothing more than the counters; anything above it takes the slow path, which raises the
/// peak, checks the budget, and closes the episode.
/// </remarks>
[StructLayout(LayoutKind.Explicit, Size = 64)]
internal struct PeakTracker
{
    /// <summary>Sum of the live-byte deltas threads have published (Interlocked).</summary>
    [FieldOffset(0)] public long Published;

    /// <summary>Highest live-byte estimate seen (CAS max).</summary>
    [FieldOffset(8)] public long Peak;

    /// <summary>The one value the fast path compares its estimate with: see the invariant.</summary>
    [FieldOffset(16)] public long Gate;

    /// <summary>The budget: most live bytes the domain may hold; <see cref="Diagnostics.Budget.None"/> for none.</summary>
    [FieldOffset(24)] public long Limit;

    /// <summary>1 while a refusal episode is open: from a refusal until the next growth the budget admits.</summary>
    [FieldOffset(32)] public int EpisodeOpen;

    /// <summary>Pending growth at which a thread publishes (and the budget is checked in one atomic step):
    /// <see cref="MemoryAccounting.PublishThreshold"/>, or 1 for an exact budget (every growth published).</summary>
    [FieldOffset(40)] public long PublishAt;
}


