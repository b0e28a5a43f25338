namespace Runtime.Memory.Allocators.SmallObject;

/// <summary>
/// One arena: <see cref="SizeClasses.ArenaSize"/> bytes from an <see cref="ArenaAllocator"/>, carved into pools.
/// Managed bookkeeping; every field is read and written under the allocator's arena lock.
/// </summary>
internal sealed unsafe class Arena
{
    /// <summary>What the arena allocator returned.</summary>
    public required byte* Base;

    /// <summary>The first pool-aligned address in the arena.</summary>
    public required byte* FirstPool;

    /// <summary>Pools the arena holds: 64, or 63 when the arena is not pool-aligned.</summary>
    public required int PoolCount;

    /// <summary>The arena allocator to give the arena back to (it may have been swapped since).</summary>
    public required ArenaAllocator Allocator;

    /// <summary>Slot in the allocator's arena table, stored in each pool header.</summary>
    public required int Index;

    /// <summary>Pools not in use: never used, or returned.</summary>
    public int FreeCount;

    /// <summary>Pools [0, CarvedCount) have been used at least once; the rest have never been touched.</summary>
    public int CarvedCount;

    /// <summary>Returned pools, linked through <see cref="Pool.Next"/>.</summary>
    public Pool* FreePools;

    /// <summary>Bytes the arena loses to alignment: a pool's worth when its base is not pool-aligned.</summary>
    public int AlignmentLoss => SizeClasses.ArenaSize - (PoolCount * SizeClasses.PoolSize);

    /// <summary>Takes a pool: a returned one first (its pages are already resident), else the next untouched one.</summary>
    public Pool* TakePool(out int poolIndex)
    {
        Pool* pool;
        if (FreePools != null)
        {
            pool = FreePools;
            FreePools = pool->Next;
            poolIndex = pool->PoolIndex;
        }
        else
        {
            poolIndex = CarvedCount++;
            pool = (Pool*)(FirstPool + ((nint)poolIndex * SizeClasses.PoolSize));
        }

        FreeCount--;
        return pool;
    }

    /// <summary>Gives a pool back to the arena.</summary>
    public void ReturnPool(Pool* pool)
    {
        pool->Owner = null;
        pool->List = PoolList.None;
        pool->Next = FreePools;
        FreePools = pool;
        FreeCount++;
    }

    /// <summary>The header of pool <paramref name="index"/> (only meaningful for carved pools).</summary>
    public Pool* PoolAt(int index) => (Pool*)(FirstPool + ((nint)index * SizeClasses.PoolSize));
}
