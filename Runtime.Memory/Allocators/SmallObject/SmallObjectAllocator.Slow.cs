using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Allocators.SmallObject;

// Slow paths of the small-object allocator. Methods named ...Locked run under _arenaLock; everything else here runs
// on the thread that owns the heap it is given.
public sealed unsafe partial class SmallObjectAllocator
{
    private readonly Lock _arenaLock = new();

    /// <summary>Arena table; a pool header stores its arena's index. Freed slots are null and reused.</summary>
    private readonly List<Arena?> _arenas = [];

    /// <summary>Pools whose owner thread ended, per class, linked through <see cref="Pool.Next"/>/<see cref="Pool.Prev"/>.</summary>
    private readonly long[] _abandoned = new long[SizeClasses.Count];

    /// <summary>Every registered heap, for abandoning those of ended threads.</summary>
    private readonly List<ThreadHeap> _heaps = [];

    private readonly ThreadLocal<ThreadHeap?> _heapOfThread = new();

    /// <summary>Per class, how many blocks other threads have freed into pools they do not own (remote frees bump it
    /// after their push), so that an owner walks its Full pools only when some may have regained blocks.</summary>
    private readonly long[] _remoteFrees = new long[SizeClasses.Count];

    /// <summary>Set by a remote free into a pool without an owner that left it with no block in use.</summary>
    private int _abandonedMayHaveDrained;

    private long _arenasAllocatedTotal;
    private long _arenasReclaimed;
    private long _arenasHighWater;
    private int _arenasCurrent;
    private bool _disposed;

    /// <summary>A heap with no pools, handed out when a thread's heap cannot be created: every request through it fails.</summary>
    private static readonly nint s_noHeap = (nint)NativeMemory.AllocZeroed((nuint)sizeof(Heap));

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* MallocOther(Heap* heap, nuint size) => size == 0 ? MallocFrom(heap, 1) : _large.Malloc(size);

    [MethodImpl(MethodImplOptions.NoInlining)]
    internal nuint FreeLarge(void* ptr)
    {
        if (ptr == null)
        {
            return 0;
        }

        nuint size = _large.BlockSize(ptr);
        _large.Free(ptr);
        return size;
    }

    /// <summary>
    /// The calling thread's heap of this allocator, registering the thread on first use. With
    /// <paramref name="create"/> false a thread that has never allocated gets null (and is remembered as such).
    /// Never throws: when memory for a heap cannot be had, the stand-in <see cref="s_noHeap"/> is returned for this
    /// call only (it is never stored, so the next call tries again).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal Heap* HeapOfCurrentThread(bool create)
    {
        RegistrationOfCurrentThread(create, out Heap* heap);
        return heap;
    }

    /// <summary>What <see cref="HeapOfCurrentThread"/> does, also returning the thread's registration (null only when
    /// even that could not be allocated).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal ThreadHeap? RegistrationOfCurrentThread(bool create, out Heap* heap)
    {
        ThreadHeap? registration = null;
        try
        {
            registration = _heapOfThread.Value;
            if (registration is null)
            {
                registration = new ThreadHeap(this, Thread.CurrentThread);
                _heapOfThread.Value = registration;
            }

            if (registration.Heap == null && create)
            {
                var newHeap = (Heap*)NativeMemory.AllocZeroed((nuint)sizeof(Heap));
                lock (_arenaLock)
                {
                    AbandonEndedThreadsLocked();
                    try
                    {
                        _heaps.Add(registration);
                    }
                    catch (OutOfMemoryException)
                    {
                        NativeMemory.Free(newHeap);
                        throw;
                    }

                    registration.Heap = newHeap; // published under the lock, with its registration
                }
            }

            t_lastHeap = registration;
            heap = registration.Heap;
            return registration;
        }
        catch (OutOfMemoryException)
        {
            heap = create ? (Heap*)s_noHeap : null;
            return registration;
        }
    }

    /// <summary>
    /// Pops the head of a pool's local free list, which the caller has checked is not empty, checking both links as the
    /// fast path does; null when the list was damaged (reported, and the rest of the list dropped).
    /// </summary>
    private void* Pop(Pool* pool)
    {
        byte* block = pool->LocalFree;
        if (!Pool.InPool(pool, block))
        {
            return FreeListDamaged(pool, (byte*)pool, block); // the header's own pointer was overwritten
        }

        byte* next = *(byte**)block;
        if (!Pool.LinkStaysInPool(pool, next))
        {
            return FreeListDamaged(pool, block, next);
        }

        pool->LocalFree = next;
        pool->Used++;
        return block;
    }

    /// <summary>
    /// Where a corruption this allocator finds is reported: set by the domain whose base allocator this is (the report
    /// then names the domain, and the domain's debug hooks decide what happens); without one the process stops.
    /// </summary>
    internal MemoryDomain? ReportingDomain { get; set; }

    /// <summary>
    /// A free-list link of <paramref name="pool"/> leaves the pool: <paramref name="damaged"/> is the free block holding
    /// it (or the pool itself, when the header's list head was overwritten). Drops the rest of the list first, so that
    /// nothing follows the link whatever happens next, then reports. When the report returns (the debug hooks under
    /// <see cref="ViolationAction.Log"/>), a damaged block's own memory is still a block of the pool and is handed out;
    /// otherwise the request goes on through the slow path.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* FreeListDamaged(Pool* pool, byte* damaged, byte* link)
    {
        pool->LocalFree = null; // the dropped blocks are never handed out; the pool keeps counting only what it handed out
        ReportDamage(pool, damaged, link, MemoryOperation.Malloc, "free list");
        if (damaged != (byte*)pool)
        {
            pool->Used++;
            return damaged;
        }

        return null;
    }

    /// <summary>Collects a pool's remote frees, reporting a damaged list (<see cref="Pool.CollectThreadFree"/>).</summary>
    private int CollectRemoteFrees(Pool* pool)
    {
        int n = Pool.CollectThreadFree(pool, out byte* damaged, out byte* link);
        if (n < 0)
        {
            ReportDamage(pool, damaged, link, MemoryOperation.Malloc, "list of blocks freed by other threads");
            return 0;
        }

        return n;
    }

    /// <summary>Builds the report of a damaged list and hands it to the domain (or stops the process without one).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ReportDamage(Pool* pool, byte* damaged, byte* link, MemoryOperation operation, string list)
    {
        int size = pool->BlockSize;
        string headline, details;
        if (damaged == (byte*)pool)
        {
            headline = $"the header of the pool at {ViolationReport.Address((nuint)pool)} (size class {size} bytes) is damaged: its {list} starts at {ViolationReport.Address((nuint)link)}, outside the pool";
            details = $"    The header sits at the start of the pool, right after the last block of the pool before it in the arena:\n" +
                      $"    an overrun of that block is the usual cause.\n";
        }
        else
        {
            nuint offset = (nuint)damaged - (nuint)pool;
            headline = $"the free block at {ViolationReport.Address((nuint)damaged)} (size class {size} bytes) was written after it was freed: its {list} link holds {ViolationReport.Address((nuint)link)}, outside its pool";
            details = $"    The block lies {offset} bytes into the pool at {ViolationReport.Address((nuint)pool)}. Its first 8 bytes are the link to the next\n" +
                      $"    free block; something wrote there after the block was freed (a stale pointer), or an overrun of the\n" +
                      $"    block before it ran into it. The rest of the pool's {list} is dropped: those blocks are never handed out.\n";
        }

        MemoryDomain? domain = ReportingDomain;
        DebugHook? hooks = domain?.DebugHook;
        if (damaged != (byte*)pool && hooks?.DescribeOverrunInto((nuint)damaged) is { } overrun)
        {
            details += overrun; // under the debug hooks: the block whose overrun did it
        }

        MemoryViolation violation = ViolationReport.Corruption(MemoryViolationKind.HeapCorruption, operation, domain?.Kind, Name, (nuint)damaged, headline, details, hooks is not null);
        if (domain is null)
        {
            MemoryDebugger.FailFastOnCorruption(violation);
            return;
        }

        domain.ReportCorruption(violation);
    }

    /// <summary>
    /// The current pool of the class had no free block. In order: the Available pools (collecting remote frees,
    /// extending into virgin blocks, moving exhausted pools to Full), then the Full pools that received remote frees
    /// (returning those that became empty), then a pool from the arenas.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* MallocSlow(Heap* heap, int cls)
    {
        if (heap == (Heap*)s_noHeap)
        {
            return null;
        }

        while (true)
        {
            Pool* pool = (Pool*)heap->Available[cls];
            while (pool != null)
            {
                if (pool->LocalFree != null || (pool->ThreadFree != 0 && CollectRemoteFrees(pool) > 0) || Pool.ExtendFromVirgin(pool))
                {
                    void* block = Pop(pool);
                    if (block != null)
                    {
                        return block;
                    }

                    continue; // the list was damaged (reported) and dropped: this pool again, without it
                }

                Pool* next = pool->Next;
                Heap.Unlink(heap, pool);
                Heap.PushFront(heap, pool, PoolList.Full);
                pool = next;
            }

            Pool* reusable = ReclaimFullPools(heap, cls);
            if (reusable == null)
            {
                reusable = AcquirePool(heap, cls);
                if (reusable == null)
                {
                    return null; // the arena allocator is out of memory
                }
            }

            Heap.PushFront(heap, reusable, PoolList.Available);
        }
    }

    /// <summary>
    /// Collects remote frees of every Full pool of the class. Pools that became wholly free go back to their arena;
    /// the one with the most free blocks is returned for reuse (unlinked); other pools with free blocks move to
    /// Available.
    /// </summary>
    /// <remarks>Only when some thread has freed a block of the class remotely since this heap last looked
    /// (<see cref="_remoteFrees"/>): a Full pool regains blocks otherwise only through its owner's frees, which move it
    /// back to Available themselves (<see cref="FreeSlow"/>). Without that check every exhausted class walked every Full
    /// pool of a large live set, a cache miss per pool, on every pool change.</remarks>
    private Pool* ReclaimFullPools(Heap* heap, int cls)
    {
        long remote = Volatile.Read(ref _remoteFrees[cls]);
        if (remote == heap->RemoteFreesSeen[cls])
        {
            return null;
        }

        heap->RemoteFreesSeen[cls] = remote; // read before the walk: a remote free after it is seen next time
        Pool* chosen = null;
        Pool* pool = (Pool*)heap->Full[cls];
        while (pool != null)
        {
            Pool* next = pool->Next;
            if (pool->ThreadFree != 0)
            {
                CollectRemoteFrees(pool);
            }

            if (pool->LocalFree != null)
            {
                Heap.Unlink(heap, pool);
                if (pool->Used == 0)
                {
                    ReleasePool(pool);
                }
                else if (chosen == null || pool->Used < chosen->Used)
                {
                    if (chosen != null)
                    {
                        Heap.PushFront(heap, chosen, PoolList.Available);
                    }

                    chosen = pool;
                }
                else
                {
                    Heap.PushFront(heap, pool, PoolList.Available);
                }
            }

            pool = next;
        }

        return chosen;
    }

    /// <summary>
    /// After an owner free that brought a Full pool down to its refill mark, or emptied a pool that is not the
    /// class's current one: the Full pool moves to the front of Available; the empty pool goes back to its arena.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FreeSlow(Heap* heap, Pool* pool)
    {
        if (pool->List == PoolList.Full)
        {
            Heap.Unlink(heap, pool);
            Pool* oldHead = (Pool*)heap->Available[pool->ClassIndex];
            Heap.PushFront(heap, pool, PoolList.Available);
            if (oldHead != null && oldHead->Used == 0)
            {
                // The empty pool kept as current would now sit behind this one and never be returned.
                Heap.Unlink(heap, oldHead);
                ReleasePool(oldHead);
            }

            return;
        }

        if (pool->Used == 0 && (Pool*)heap->Available[pool->ClassIndex] != pool)
        {
            Heap.Unlink(heap, pool);
            ReleasePool(pool);
        }
    }

    /// <summary>Gives an empty pool (unlinked from every list) back to its arena.</summary>
    private void ReleasePool(Pool* pool)
    {
        lock (_arenaLock)
        {
            ReleasePoolLocked(pool);
        }
    }

    // ---- arena management (under _arenaLock) ----------------------------------------------------------------

    /// <summary>A pool for class <paramref name="cls"/>: an abandoned one to adopt, else a fresh one from the arenas.</summary>
    private Pool* AcquirePool(Heap* heap, int cls)
    {
        lock (_arenaLock)
        {
            if (_disposed)
            {
                return null; // used after Dispose: fail the request rather than map arenas nobody will return
            }

            AbandonEndedThreadsLocked();
            if (Interlocked.Exchange(ref _abandonedMayHaveDrained, 0) != 0)
            {
                SweepAbandonedLocked();
            }

            Pool* adopted = AdoptAbandonedLocked(heap, cls);
            if (adopted != null)
            {
                return adopted;
            }

            Arena? arena = MostUsedArenaWithFreePoolLocked() ?? NewArenaLocked();
            if (arena == null)
            {
                return null;
            }

            Pool* pool = arena.TakePool(out int poolIndex);
            Pool.Init(pool, cls, heap, arena.Index, poolIndex);
            _map.SetPoolClass(pool, cls);
            return pool;
        }
    }

    /// <summary>
    /// The arena with the fewest free pools that still has one, so nearly empty arenas drain and can be returned
    /// (pymalloc's ordering). A linear scan: pool acquisitions are rare (once per pool's worth of blocks) and arenas
    /// number in the tens for hundreds of megabytes.
    /// </summary>
    private Arena? MostUsedArenaWithFreePoolLocked()
    {
        Arena? best = null;
        foreach (Arena? arena in _arenas)
        {
            if (arena is not null && arena.FreeCount > 0 && (best is null || arena.FreeCount < best.FreeCount))
            {
                best = arena;
            }
        }

        return best;
    }

    /// <summary>The reserved space arenas come from, reserved on first use; null when the OS refused it (then never asked again).</summary>
    private ArenaSpace? SpaceLocked()
    {
        if (_space is null && !_spaceRefused)
        {
            _space = ArenaSpace.TryReserve();
            _spaceRefused = _space is null;
            if (_space is not null)
            {
                _spaceBase = (nuint)_space.Base;
                _spaceSize = ArenaSpace.Bytes;
            }
        }

        return _space;
    }

    private bool _spaceRefused;

    private Arena? NewArenaLocked()
    {
        ArenaAllocator allocator = _arenaAllocator;
        byte* memory = null;
        if (ReferenceEquals(allocator, OsArenaAllocator.Instance) && SpaceLocked() is { } space)
        {
            memory = (byte*)space.Alloc(SizeClasses.ArenaSize);
            if (memory != null)
            {
                allocator = space;
            }
        }

        if (memory == null)
        {
            memory = (byte*)allocator.Alloc(SizeClasses.ArenaSize);
            if (memory == null)
            {
                return null;
            }
        }

        if (!ArenaMap.CanMap(memory) || !_map.Mark(memory, used: true))
        {
            allocator.Free(memory, SizeClasses.ArenaSize);
            return null;
        }

        if (_arenas.Count == _arenas.Capacity && !_arenas.Contains(null))
        {
            try
            {
                _arenas.Capacity = Math.Max(16, _arenas.Capacity * 2);
            }
            catch (OutOfMemoryException)
            {
                _map.Mark(memory, used: false);
                allocator.Free(memory, SizeClasses.ArenaSize);
                return null;
            }
        }

        byte* firstPool = (byte*)(((nuint)memory + SizeClasses.PoolSize - 1) & ~(nuint)(SizeClasses.PoolSize - 1));
        int poolCount = (int)((memory + SizeClasses.ArenaSize - firstPool) / SizeClasses.PoolSize);
        int index = _arenas.IndexOf(null);
        if (index < 0)
        {
            index = _arenas.Count;
            _arenas.Add(null);
        }

        var arena = new Arena { Base = memory, FirstPool = firstPool, PoolCount = poolCount, Allocator = allocator, Index = index, FreeCount = poolCount };
        if (!ReferenceEquals(allocator, _space))
        {
            _outsideArenas++; // before any block of it is handed out
        }

        _arenas[index] = arena;
        _arenasAllocatedTotal++;
        _arenasCurrent++;
        _arenasHighWater = Math.Max(_arenasHighWater, _arenasCurrent);
        return arena;
    }

    /// <summary>Returns a pool to its arena; a wholly free arena goes back to the OS unless it is the only spare.</summary>
    private void ReleasePoolLocked(Pool* pool)
    {
        Arena arena = _arenas[pool->ArenaIndex]!;
        arena.ReturnPool(pool);
        if (arena.FreeCount < arena.PoolCount)
        {
            return;
        }

        // Keep at most one wholly free arena mapped, to avoid thrashing (CPython 3.9, bpo-37257).
        bool anotherIsFree = false;
        foreach (Arena? other in _arenas)
        {
            if (other is not null && other != arena && other.FreeCount == other.PoolCount)
            {
                anotherIsFree = true;
                break;
            }
        }

        if (anotherIsFree)
        {
            FreeArenaLocked(arena);
        }
    }

    private void FreeArenaLocked(Arena arena)
    {
        _map.Mark(arena.Base, used: false);
        arena.Allocator.Free(arena.Base, SizeClasses.ArenaSize);
        if (!ReferenceEquals(arena.Allocator, _space))
        {
            _outsideArenas--;
        }

        _arenas[arena.Index] = null;
        _arenasCurrent--;
        _arenasReclaimed++;
    }

    /// <summary>Takes an abandoned pool of the class that has blocks to give, releasing any that drained.</summary>
    private Pool* AdoptAbandonedLocked(Heap* heap, int cls) => SweepAbandonedLocked(cls, adopter: heap);

    /// <summary>Gives back abandoned pools of every class that have drained.</summary>
    private void SweepAbandonedLocked()
    {
        for (int cls = 0; cls < SizeClasses.Count; cls++)
        {
            SweepAbandonedLocked(cls, adopter: null);
        }
    }

    /// <summary>
    /// Walks the abandoned pools of a class, collecting their remote frees and giving back those that drained.
    /// With an <paramref name="adopter"/>, stops at the first pool with blocks to give and hands it over.
    /// </summary>
    private Pool* SweepAbandonedLocked(int cls, Heap* adopter)
    {
        Pool* pool = (Pool*)_abandoned[cls];
        while (pool != null)
        {
            Pool* next = pool->Next;
            CollectRemoteFrees(pool);
            if (pool->Used == 0)
            {
                UnlinkAbandonedLocked(pool);
                ReleasePoolLocked(pool);
            }
            else if (adopter != null && (pool->LocalFree != null || pool->Virgin < pool->Limit))
            {
                UnlinkAbandonedLocked(pool);
                pool->Owner = adopter;
                return pool;
            }

            pool = next;
        }

        return null;
    }

    /// <summary>Abandons the heaps of threads that have ended: empty pools go back, the rest wait to be adopted.</summary>
    private void AbandonEndedThreadsLocked()
    {
        for (int i = _heaps.Count - 1; i >= 0; i--)
        {
            ThreadHeap registration = _heaps[i];
            if (registration.Thread.IsAlive)
            {
                continue;
            }

            Heap* heap = registration.Heap;
            for (int cls = 0; cls < SizeClasses.Count; cls++)
            {
                AbandonListLocked(heap, (Pool*)heap->Available[cls]);
                AbandonListLocked(heap, (Pool*)heap->Full[cls]);
            }

            NativeMemory.Free(heap);
            registration.Heap = null;
            _heaps.RemoveAt(i);
        }
    }

    private void AbandonListLocked(Heap* heap, Pool* pool)
    {
        while (pool != null)
        {
            Pool* next = pool->Next;
            Heap.Unlink(heap, pool);
            CollectRemoteFrees(pool);
            if (pool->Used == 0)
            {
                ReleasePoolLocked(pool);
            }
            else
            {
                pool->Owner = null;
                PushAbandonedLocked(pool);
                _abandonedMayHaveDrained = 1; // its last blocks may be freed by threads that saw the old owner
            }

            pool = next;
        }
    }

    private void PushAbandonedLocked(Pool* pool)
    {
        Pool* head = (Pool*)_abandoned[pool->ClassIndex];
        pool->Prev = null;
        pool->Next = head;
        if (head != null)
        {
            head->Prev = pool;
        }

        _abandoned[pool->ClassIndex] = (long)pool;
        pool->List = PoolList.Abandoned;
    }

    private void UnlinkAbandonedLocked(Pool* pool)
    {
        if (pool->Prev != null)
        {
            pool->Prev->Next = pool->Next;
        }
        else
        {
            _abandoned[pool->ClassIndex] = (long)pool->Next;
        }

        if (pool->Next != null)
        {
            pool->Next->Prev = pool->Prev;
        }

        pool->Next = null;
        pool->Prev = null;
        pool->List = PoolList.None;
    }

    // ---- maintenance ------------------------------------------------------------------------------------------

    /// <summary>
    /// Gives back what the calling thread holds without need: it collects remote frees into its pools and returns
    /// every pool that is empty, including the current ones it keeps for speed. Also abandons the heaps of threads
    /// that have ended and returns abandoned pools that have drained. Call it when a thread goes idle.
    /// </summary>
    public void Collect()
    {
        Heap* heap = CurrentHeapOrNull();
        if (heap != null)
        {
            for (int cls = 0; cls < SizeClasses.Count; cls++)
            {
                ReleaseEmptyPools(heap, (Pool*)heap->Available[cls]);
                ReleaseEmptyPools(heap, (Pool*)heap->Full[cls]);
            }
        }

        lock (_arenaLock)
        {
            AbandonEndedThreadsLocked();
            SweepAbandonedLocked();
        }
    }

    private void ReleaseEmptyPools(Heap* heap, Pool* pool)
    {
        while (pool != null)
        {
            Pool* next = pool->Next;
            CollectRemoteFrees(pool);
            if (pool->Used == 0)
            {
                Heap.Unlink(heap, pool);
                ReleasePool(pool);
            }

            pool = next;
        }
    }

    /// <summary>
    /// Returns every arena to the arena allocator when no block is live; otherwise leaves them mapped (their users
    /// still hold blocks) and returns false. The allocator must not be used afterwards.
    /// </summary>
    public void Dispose() => TryRelease();

    /// <summary>What <see cref="Dispose"/> does, reporting whether the arenas could be returned.</summary>
    public bool TryRelease()
    {
        lock (_arenaLock)
        {
            if (_disposed)
            {
                return true;
            }

            AbandonEndedThreadsLocked();
            SweepAbandonedLocked();
            if (GetStatisticsLocked().BlocksInUse != 0)
            {
                return false;
            }

            for (int i = 0; i < _arenas.Count; i++)
            {
                if (_arenas[i] is { } arena)
                {
                    FreeArenaLocked(arena);
                }
            }

            // Live threads may still hold their heap pointers (in thread statics and thread contexts), so heaps are
            // emptied, not freed: a use after dispose then fails (a null return) instead of touching freed memory.
            foreach (ThreadHeap registration in _heaps)
            {
                NativeMemory.Clear(registration.Heap, (nuint)sizeof(Heap));
            }

            _map.Dispose();
            _spaceSize = 0;
            _space?.Release();
            _disposed = true;
            Debug.Assert(_arenasCurrent == 0, "every arena was returned");
            return true;
        }
    }
}
