using Runtime.Memory.SmallObject;

namespace Runtime.Memory;

/// <summary>One size class in <see cref="SmallObjectStatistics"/>.</summary>
/// <param name="Index">Class index (0 for 16 bytes ... 31 for 512).</param>
/// <param name="Size">Block size in bytes.</param>
/// <param name="Pools">Pools of this class in use.</param>
/// <param name="BlocksInUse">Blocks handed out and not freed.</param>
/// <param name="AvailableBlocks">Free blocks in those pools (including never-used ones).</param>
public sealed record SizeClassStatistics(int Index, int Size, long Pools, long BlocksInUse, long AvailableBlocks);

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

public sealed unsafe partial class SmallObjectAllocator
{
    /// <summary>Arenas mapped now (one read, no walk): what the metrics report between full statistics.</summary>
    public int ArenasCurrent => Volatile.Read(ref _arenasCurrent);

    /// <summary>The allocator's arenas, pools and blocks. Abandons the heaps of ended threads first.</summary>
    public SmallObjectStatistics GetStatistics()
    {
        lock (_arenaLock)
        {
            AbandonEndedThreadsLocked();
            return GetStatisticsLocked();
        }
    }

    private SmallObjectStatistics GetStatisticsLocked()
    {
        var pools = new long[SizeClasses.Count];
        var inUse = new long[SizeClasses.Count];
        var available = new long[SizeClasses.Count];
        long unusedPools = 0, headers = 0, quantization = 0, alignment = 0;
        foreach (Arena? arena in _arenas)
        {
            if (arena is null)
            {
                continue;
            }

            unusedPools += arena.FreeCount;
            alignment += arena.AlignmentLoss;
            for (int i = 0; i < arena.CarvedCount; i++)
            {
                Pool* pool = arena.PoolAt(i);
                if (pool->List == PoolList.None)
                {
                    continue; // free in its arena
                }

                int cls = pool->ClassIndex;
                long used = pool->Used - Volatile.Read(ref pool->ThreadFreeCount);
                pools[cls]++;
                inUse[cls] += used;
                available[cls] += pool->Capacity - used;
                headers += SizeClasses.PoolOverhead;
                quantization += (SizeClasses.PoolSize - SizeClasses.PoolOverhead) % pool->BlockSize;
            }
        }

        var classes = new List<SizeClassStatistics>();
        long allocatedBytes = 0, availableBytes = 0;
        for (int cls = 0; cls < SizeClasses.Count; cls++)
        {
            int size = SizeClasses.SizeOf(cls);
            classes.Add(new SizeClassStatistics(cls, size, pools[cls], inUse[cls], available[cls]));
            allocatedBytes += inUse[cls] * size;
            availableBytes += available[cls] * size;
        }

        return new SmallObjectStatistics(
            classes, _arenasAllocatedTotal, _arenasReclaimed, _arenasHighWater, _arenasCurrent,
            allocatedBytes, availableBytes, unusedPools, headers, quantization, alignment);
    }
}
