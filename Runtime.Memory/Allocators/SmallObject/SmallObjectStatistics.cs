
namespace Runtime.Memory.Allocators.SmallObject;

/// <summary>
/// The state of a <see cref="SmallObjectAllocator"/>, with the figures of CPython's <c>sys._debugmallocstats()</c>.
/// Exact when no thread is allocating; read while threads allocate, per-pool figures are from slightly different
/// moments. The byte figures always add up to <see cref="TotalBytes"/> (arenas × 1 MiB).
/// </summary>
public sealed record SmallObjectStatistics(
    IReadOnlyList<SizeClassStatistics> Classes,
    long ArenasAllocatedTotal,
    long ArenasReclaimed,
    long ArenasHighWater,
    long ArenasCurrent,
    long BytesInAllocatedBlocks,
    long BytesInAvailableBlocks,
    long UnusedPools,
    long BytesLostToPoolHeaders,
    long BytesLostToQuantization,
    long BytesLostToArenaAlignment)
{
    /// <summary>Blocks handed out and not freed, over all classes.</summary>
    public long BlocksInUse => Classes.Sum(c => c.BlocksInUse);

    /// <summary>Bytes of the arenas currently allocated.</summary>
    public long TotalBytes => ArenasCurrent * (long)SizeClasses.ArenaSize;
}
