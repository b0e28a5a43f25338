
namespace Runtime.Memory.Allocators.SmallObject;

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
