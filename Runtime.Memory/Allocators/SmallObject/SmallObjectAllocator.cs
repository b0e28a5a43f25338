using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Allocators.SmallObject;

/// <summary>
/// The small-object allocator (configuration name <c>pymalloc</c>, the default of <c>mem</c> and <c>obj</c>):
/// requests up to 512 bytes come from 16-byte size classes in pools inside 1 MiB arenas, larger ones from the
/// system allocator. Thread-safe with no lock on its fast path, and it gives empty arenas back to the OS.
/// </summary>
/// <remarks>
/// <para><b>Design.</b> pymalloc's layout (size classes, 16 KiB pools, 1 MiB arenas, arenas used most-full first,
/// one spare arena kept) with mimalloc's threading: every thread allocates from its own <see cref="Heap"/> of
/// pools; a block freed by its pool's owner goes on the owner's local free list, a block freed by any other thread
/// goes on the pool's lock-free <c>ThreadFree</c> list, which the owner collects when it runs short. Only taking a
/// pool from an arena, or giving one back, takes the arena lock. See <see cref="SizeClasses"/> for the glossary.</para>
/// <para><b>Fast paths.</b> Malloc: the thread's heap (one thread-static load and owner compare; through a domain the
/// heap is cached in the thread's context, so one lookup serves both), the class's current pool, pop its local free
/// list: about a dozen instructions, no atomic, no lock, no native call. Free: the ownership check
/// (<see cref="ArenaMap"/>, two dependent loads, never touching foreign memory), the pool header, an owner compare
/// and a push. A free from another thread costs two atomics instead (a counter for statistics, and the CAS).</para>
/// <para><b>Giving memory back.</b> A pool goes back to its arena as soon as it is empty and is not its class's
/// current pool; an arena goes back to the OS as soon as all its pools are free, keeping one spare. Threads that end
/// leave nothing stranded: at the next pool acquisition, <see cref="Collect"/> or statistics read their heaps are
/// abandoned; empty pools go back, the rest keep receiving frees until another thread adopts them or they drain
/// (drained ones are returned at the next pool acquisition).</para>
/// <para><b>What a live thread keeps.</b> The current pool of each class it has used, even when empty, so a tight
/// malloc/free loop never touches the arena lock: up to 32 pools, and with them the arenas they sit in. Blocks other
/// threads free into a live thread's pools wait on those pools until their owner next allocates in the class. A
/// thread that goes idle gives all of this back by calling <see cref="Collect"/> (as <c>mi_collect</c>).</para>
/// <para><b>Lifetime.</b> <see cref="Dispose"/> returns every arena when no block is live; with live blocks the arenas
/// are left mapped (as CPython does at finalisation), since freeing them would pull memory from under their users.
/// After disposal requests fail with null.</para>
/// </remarks>
public sealed unsafe partial class SmallObjectAllocator : MemoryAllocator, IDisposable
{
    /// <summary>Largest request served from pools.</summary>
    public const int SmallRequestThreshold = SizeClasses.SmallRequestThreshold;

    /// <summary>Bytes per arena.</summary>
    public const int ArenaSize = SizeClasses.ArenaSize;

    /// <summary>Bytes per pool.</summary>
    public const int PoolSize = SizeClasses.PoolSize;

    private readonly ArenaMap _map = new();

    private static long s_ids;

    /// <summary>This allocator's id (never 0, never reused): a thread context's heap cache is valid only for it
    /// (<see cref="Threading.HeapSlot.HeapOwner"/>).</summary>
    internal readonly long Id = Interlocked.Increment(ref s_ids);

    /// <summary>Where requests above 512 bytes go (the system allocator).</summary>
    private readonly SystemAllocator _large;

    /// <summary>Creates an allocator whose large blocks come from <paramref name="large"/> (default: a new system allocator).</summary>
    public SmallObjectAllocator(SystemAllocator? large = null, ArenaAllocator? arenaAllocator = null)
    {
        _large = large ?? new SystemAllocator();
        _arenaAllocator = arenaAllocator ?? OsArenaAllocator.Instance;
        Debug.Assert(SizeClasses.PoolOverhead % SizeClasses.Alignment == 0, "blocks must stay 16-byte aligned");
        Debug.Assert(SizeClasses.ArenaSize % SizeClasses.PoolSize == 0, "arena size must be a multiple of the pool size");
    }

    /// <inheritdoc/>
    public override string Name => "pymalloc";

    /// <summary>
    /// The arena allocator new arenas come from (PEP 445's <c>PyObject_SetArenaAllocator</c>). Can be swapped at any
    /// time: each arena remembers the allocator it came from and is given back to it.
    /// </summary>
    public ArenaAllocator ArenaAllocator
    {
        get => _arenaAllocator;
        set => _arenaAllocator = value ?? throw new ArgumentNullException(nameof(value));
    }

    private volatile ArenaAllocator _arenaAllocator;

    /// <inheritdoc/>
    internal override Pipeline.DomainPipeline CreatePipeline(in Pipeline.PipelineSite site) =>
        site.Limited ? new Pipeline.SmallObjectPipeline<Pipeline.WithBudget>(this, site) : new Pipeline.SmallObjectPipeline<Pipeline.NoBudget>(this, site);

    /// <inheritdoc/>
    internal override void AdoptedBy(MemoryDomain domain) => ReportingDomain = domain;

    /// <inheritdoc/>
    internal override nuint AccountedSizeOf(nuint size) => AccountedSize(size);

    /// <inheritdoc/>
    internal override SmallObjectStatistics? GetPoolStatistics() => GetStatistics();

    /// <summary>The bytes a domain accounts for a request of <paramref name="size"/> bytes: its class size, or the size itself above 512.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static nuint AccountedSize(nuint size) =>
        size - 1 < SizeClasses.SmallRequestThreshold ? (size + SizeClasses.Alignment - 1) & ~(nuint)(SizeClasses.Alignment - 1)
        : size == 0 ? SizeClasses.Alignment : size;

    // ---- fast paths -----------------------------------------------------------------------------------------

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void* Malloc(nuint size) => MallocFrom(CurrentHeap(), size);

    /// <summary>
    /// Malloc from <paramref name="heap"/>, which must be the calling thread's heap of this allocator (domains keep
    /// it in the thread's context, so one thread-static lookup serves both the accounting and the allocator).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void* MallocFrom(Heap* heap, nuint size)
    {
        if (size - 1 < SizeClasses.SmallRequestThreshold) // sizes 1..512; 0 wraps around and takes the slow path
        {
            int cls = SizeClasses.IndexOf(size);
            Pool* pool = (Pool*)heap->Available[cls];
            if (pool != null)
            {
                // Every link followed is checked to stay in the pool (Pool.LinkStaysInPool): the head's check doubles as
                // the null test, the next link's costs an xor and a compare. A write after free or an overrun that
                // overwrote a link is reported here, naming the block, instead of faulting somewhere later.
                byte* block = pool->LocalFree;
                if (Pool.InPool(pool, block))
                {
                    byte* next = *(byte**)block;
                    if (Pool.LinkStaysInPool(pool, next))
                    {
                        pool->LocalFree = next;
                        pool->Used++;
                        return block;
                    }

                    return FreeListDamaged(pool, block, next);
                }
            }

            return MallocSlow(heap, cls);
        }

        return MallocOther(heap, size);
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void Free(void* ptr) => FreeFrom(CurrentHeapOrNull(), ptr);

    /// <summary>
    /// Frees <paramref name="ptr"/> and returns the bytes a domain accounted for it. <paramref name="mine"/> is the
    /// calling thread's heap of this allocator, or null when it has none.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nuint FreeFrom(Heap* mine, void* ptr) =>
        InPool(ptr) ? FreePooled(mine, ptr) : FreeLarge(ptr); // else null, or a block of the large allocator

    /// <summary>Whether <paramref name="ptr"/> lies in one of this allocator's arenas (a pool block, if it is a block of
    /// this allocator at all); else it is null or a large block. Arenas from the allocator's reserved space
    /// (<see cref="ArenaSpace"/>) answer with a subtraction and a compare; the radix map is consulted only while some
    /// arena lies outside it (a user's arena allocator, or a full space).</summary>
    /// <remarks>A pointer inside the reserved space that is not a live block of this allocator (a block freed twice
    /// after its arena went back to the OS, a made-up pointer) is undefined behaviour here, as in mimalloc: the debug
    /// hooks catch such frees before they get here.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal bool InPool(void* ptr) => (nuint)ptr - _spaceBase < _spaceSize || (_outsideArenas != 0 && _map.Contains(ptr));

    /// <summary>Start and size of the reserved space arenas come from ((0, 0) until the first arena, or without one), for tests.</summary>
    internal (nuint Start, nuint Size) ReservedSpace => (_spaceBase, _spaceSize);

    /// <summary>The reserved space arenas come from (null until the first arena, or when the OS refused it).</summary>
    private ArenaSpace? _space;

    /// <summary>Start and size of <see cref="_space"/> (0 and 0 without one), read by <see cref="InPool"/>.</summary>
    private nuint _spaceBase;
    private nuint _spaceSize;

    /// <summary>Arenas that do not lie in <see cref="_space"/>: while there are any, ownership takes the radix map.</summary>
    private int _outsideArenas;

    /// <summary><see cref="InPool"/> and the size class of the pool holding <paramref name="ptr"/> in one lookup: −1 when
    /// not in a pool, else the class of a live block's pool, without reading the pool's header
    /// (<see cref="ArenaMap.PoolClassIfContains"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int PoolClassIfInPool(void* ptr) => _map.PoolClassIfContains(ptr);

    /// <summary><see cref="FreeFrom"/> for a block <see cref="InPool"/> has placed in a pool.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nuint FreePooled(Heap* mine, void* ptr)
    {
        Pool* pool = Pool.Of(ptr);
        nuint size = (nuint)pool->BlockSize; // read first: once the block is pushed, the pool may be returned
        Heap* owner = pool->Owner;
        if (owner == mine && mine != null)
        {
            *(byte**)ptr = pool->LocalFree;
            pool->LocalFree = (byte*)ptr;
            int used = --pool->Used;

            // Slow only when a Full pool has regained an eighth of its blocks (it becomes available again), or a pool
            // became empty while not the current pool of its class (it goes back to its arena): a malloc/free loop on
            // the current pool never gets here.
            if (pool->List == PoolList.Full ? used <= pool->RefillAt : used == 0 && (Pool*)mine->Available[pool->ClassIndex] != pool)
            {
                FreeSlow(mine, pool);
            }
        }
        else
        {
            int cls = pool->ClassIndex;
            Pool.PushThreadFree(pool, ptr); // the pool must not be touched after this: it may be returned at once
            Interlocked.Increment(ref _remoteFrees[cls]); // the owner's next reclaim walks its Full pools
            if (owner == null && _abandonedMayHaveDrained == 0)
            {
                _abandonedMayHaveDrained = 1; // an ownerless pool may have drained: the next acquisition sweeps
            }
        }

        return size;
    }

    /// <inheritdoc/>
    public override nuint BlockSize(void* ptr) =>
        InPool(ptr) ? (nuint)Pool.Of(ptr)->BlockSize : _large.BlockSize(ptr);

    // ---- what a domain calls through a hook chain: the operation and its accounted sizes in one call ----------------
    //
    // The defaults would add a BlockSize (an ownership lookup) to every call; these take the sizes from the operation,
    // as the domain's own fast path does, so a hook above this allocator costs only its own work.

    /// <inheritdoc/>
    internal override void* MallocCounted(nuint size, out nuint blockSize)
    {
        void* p = MallocFrom(CurrentHeap(), size);
        blockSize = p == null ? 0 : AccountedSize(size);
        return p;
    }

    /// <inheritdoc/>
    internal override void* ReallocCounted(void* ptr, nuint newSize, out nuint oldBlockSize, out nuint newBlockSize)
    {
        void* p = ReallocFrom(CurrentHeap(), ptr, newSize, out oldBlockSize, out newBlockSize);
        if (p == null)
        {
            newBlockSize = 0;
        }

        return p;
    }

    /// <inheritdoc/>
    internal override bool FreeCounted(void* ptr, out nuint blockSize)
    {
        blockSize = FreeFrom(CurrentHeapOrNull(), ptr);
        return true;
    }

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size)
    {
        if (!SizeMath.TryMultiply(count, size, out nuint total) || total > SystemAllocator.MaxSize)
        {
            return null;
        }

        if (total > SizeClasses.SmallRequestThreshold)
        {
            return _large.Calloc(count, size);
        }

        void* p = Malloc(total);
        if (p != null)
        {
            NativeMemory.Clear(p, total);
        }

        return p;
    }

    /// <inheritdoc/>
    /// <remarks>
    /// A small block stays where it is when the new size fits in its class and wastes little: same class, or a
    /// shrink of less than a quarter of the block (pymalloc's rule). Otherwise it moves. A large block stays with the
    /// large allocator whatever the new size (pymalloc never adopts a malloc block, bug 1185883).
    /// </remarks>
    public override void* Realloc(void* ptr, nuint newSize) =>
        ptr == null ? Malloc(newSize) : ReallocFrom(CurrentHeap(), ptr, newSize, out _, out _);

    /// <summary>
    /// Realloc of a live block from the calling thread's <paramref name="heap"/>, also returning the bytes a domain
    /// accounted for the block before (<paramref name="oldSize"/>) and after (<paramref name="newAccounted"/>), so the
    /// domain looks nothing up twice. <paramref name="ptr"/> is not null.
    /// </summary>
    internal void* ReallocFrom(Heap* heap, void* ptr, nuint newSize, out nuint oldSize, out nuint newAccounted)
    {
        if (!InPool(ptr))
        {
            oldSize = _large.BlockSize(ptr);
            newAccounted = newSize;
            return _large.Realloc(ptr, newSize);
        }

        Pool* pool = Pool.Of(ptr);
        nuint blockSize = (nuint)pool->BlockSize;
        oldSize = blockSize;
        if (newSize <= blockSize && (newSize * 4 > blockSize * 3 || AccountedSize(newSize) == blockSize))
        {
            newAccounted = blockSize;
            return ptr;
        }

        newAccounted = AccountedSize(newSize);
        void* moved = MallocFrom(heap, newSize);
        if (moved == null)
        {
            return null; // the old block is untouched
        }

        Buffer.MemoryCopy(ptr, moved, newSize, Math.Min(newSize, blockSize));
        FreeFrom(heap, ptr);
        return moved;
    }

    /// <summary>Calloc of <paramref name="count"/> × <paramref name="size"/> bytes (a product the caller has checked) from
    /// the calling thread's <paramref name="heap"/>, and the bytes a domain accounts for it.</summary>
    internal void* CallocFrom(Heap* heap, nuint count, nuint size, out nuint accounted)
    {
        nuint total = count * size;
        accounted = AccountedSize(total);
        if (total > SizeClasses.SmallRequestThreshold)
        {
            return _large.Calloc(count, size);
        }

        void* p = MallocFrom(heap, total);
        if (p != null)
        {
            NativeMemory.Clear(p, total);
        }

        return p;
    }

    /// <summary>
    /// Binds the calling thread's heap of this allocator into its context's <paramref name="slot"/> (cold: once per
    /// thread and allocator, and again once a thread that only freed so far allocates) and returns it. A thread that has
    /// never allocated gets null with <paramref name="create"/> false, and that is cached too, so its frees do not come
    /// back here; a heap that could not be created is not cached, so the next call retries.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal Heap* BindHeap(ref Threading.HeapSlot slot, bool create)
    {
        ThreadHeap? registration = RegistrationOfCurrentThread(create, out Heap* heap);
        if (registration is not null && heap == registration.Heap)
        {
            slot.Heap = heap;
            slot.HeapOwner = Id;
        }

        return heap;
    }

    // ---- per-thread heap lookup -----------------------------------------------------------------------------

    /// <summary>The last heap this thread used, of whichever small-object allocator.</summary>
    [ThreadStatic]
    private static ThreadHeap? t_lastHeap;

    /// <summary>This thread's heap, created on first use (an empty stand-in that fails every request if that fails).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Heap* CurrentHeap()
    {
        ThreadHeap? h = t_lastHeap;
        return h is not null && h.Owner == this && h.Heap != null ? h.Heap : HeapOfCurrentThread(create: true);
    }

    /// <summary>This thread's heap, or null when the thread has never allocated here (a pure consumer).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Heap* CurrentHeapOrNull()
    {
        ThreadHeap? h = t_lastHeap;
        return h is not null && h.Owner == this ? h.Heap : HeapOfCurrentThread(create: false);
    }

    /// <summary>
    /// The registration of one thread with one allocator. <see cref="Heap"/> stays null for a thread that only frees,
    /// so its frees find out quickly that it owns nothing; it is set when the thread first allocates. Domains cache
    /// the heap pointer in the thread's context once it exists (a heap lives as long as its thread).
    /// </summary>
    internal sealed class ThreadHeap(SmallObjectAllocator owner, Thread thread)
    {
        public readonly SmallObjectAllocator Owner = owner;
        public readonly Thread Thread = thread;
        public Heap* Heap;
    }
}
