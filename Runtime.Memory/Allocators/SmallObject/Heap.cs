namespace Runtime.Memory.Allocators.SmallObject;

/// <summary>
/// One thread's pools, per size class (unmanaged, so pool headers can point at it and the fast path reaches it
/// without a GC reference). Only its thread touches it, except when the arena-lock holder abandons it after the
/// thread has ended.
/// </summary>
/// <remarks>
/// For each class two doubly linked lists of pools: <c>Available</c> (the head is where blocks come from) and
/// <c>Full</c> (nothing left to give until blocks come back). A Full pool that gets an eighth of its blocks back
/// (<see cref="Pool.RefillAt"/>) moves to the front of Available, as pymalloc relinks a full pool at the front of
/// <c>usedpools</c>.
/// </remarks>
internal unsafe struct Heap
{
    /// <summary>Head of the Available list per class (Pool*).</summary>
    public fixed long Available[SizeClasses.Count];

    /// <summary>Head of the Full list per class (Pool*).</summary>
    public fixed long Full[SizeClasses.Count];

    /// <summary>Per class, the allocator's count of remote frees when this heap last walked its Full pools.</summary>
    public fixed long RemoteFreesSeen[SizeClasses.Count];

    public static Pool* Head(Heap* heap, byte list, int cls) =>
        (Pool*)(list == PoolList.Available ? heap->Available[cls] : heap->Full[cls]);

    public static void PushFront(Heap* heap, Pool* pool, byte list)
    {
        int cls = pool->ClassIndex;
        Pool* head = Head(heap, list, cls);
        pool->Prev = null;
        pool->Next = head;
        if (head != null)
        {
            head->Prev = pool;
        }

        SetHead(heap, list, cls, pool);
        pool->List = list;
    }

    public static void Unlink(Heap* heap, Pool* pool)
    {
        if (pool->Prev != null)
        {
            pool->Prev->Next = pool->Next;
        }
        else
        {
            SetHead(heap, pool->List, pool->ClassIndex, pool->Next);
        }

        if (pool->Next != null)
        {
            pool->Next->Prev = pool->Prev;
        }

        pool->Next = null;
        pool->Prev = null;
        pool->List = PoolList.None;
    }

    private static void SetHead(Heap* heap, byte list, int cls, Pool* pool)
    {
        if (list == PoolList.Available)
        {
            heap->Available[cls] = (long)pool;
        }
        else
        {
            heap->Full[cls] = (long)pool;
        }
    }
}
