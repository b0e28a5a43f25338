using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Allocators.SmallObject;

/// <summary>
/// The header at the start of every pool (unmanaged memory, inside an arena).
/// </summary>
/// <remarks>
/// <code>
///  pool (16 KiB aligned)
///  | header (PoolOverhead) | block | block | ... | block | quantization waste |
///                          ^ first block: pool + PoolOverhead          ^ Limit
///
///  A block is in exactly one of: handed out (counted in Used), LocalFree, ThreadFree (also counted in Used
///  until collected), or the virgin area [Virgin, Limit) that has never been handed out.
/// </code>
/// Owner-thread fields come first; <see cref="ThreadFree"/>, the only field other threads write, sits on the second
/// cache line so that remote frees do not bounce the owner's line.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct Pool
{
    /// <summary>Owner's free list, linked through the first word of each free block. Owner thread only.</summary>
    public byte* LocalFree;

    /// <summary>Blocks handed out and not yet returned to <see cref="LocalFree"/> (includes blocks in ThreadFree).</summary>
    public int Used;

    /// <summary>Blocks the pool holds: (PoolSize - PoolOverhead) / BlockSize.</summary>
    public int Capacity;

    /// <summary>The heap that allocates from this pool; null while abandoned or free. Changes only under the arena lock.</summary>
    public Heap* Owner;

    /// <summary>First block never handed out.</summary>
    public byte* Virgin;

    /// <summary>End of the last whole block.</summary>
    public byte* Limit;

    /// <summary>Next pool in the owner's list for this class (or in the abandoned or free list).</summary>
    public Pool* Next;

    /// <summary>Previous pool in the owner's list for this class.</summary>
    public Pool* Prev;

    /// <summary>Bytes per block: the class size.</summary>
    public int BlockSize;

    /// <summary>Size class index.</summary>
    public short ClassIndex;

    /// <summary>Which list the pool is on (<see cref="PoolList"/>).</summary>
    public byte List;

    /// <summary>Unused; keeps the layout explicit.</summary>
    public byte Reserved;

    /// <summary>
    /// Blocks freed by threads other than the owner: a lock-free LIFO (push by CAS, taken whole by Exchange, so
    /// there is no ABA). Starts on the second cache line.
    /// </summary>
    public nint ThreadFree;

    /// <summary>Blocks pushed to <see cref="ThreadFree"/> and not yet collected (Interlocked; for statistics).</summary>
    public long ThreadFreeCount;

    /// <summary>Index of the arena holding this pool.</summary>
    public int ArenaIndex;

    /// <summary>Position of the pool in its arena.</summary>
    public int PoolIndex;

    /// <summary>
    /// A Full pool goes back to Available once <see cref="Used"/> falls to this: when an eighth of its blocks (at
    /// least one) are free again. The hysteresis keeps a workload that frees and allocates one block at a time in
    /// random pools from moving pools between lists on every call (each move touches neighbouring pool headers in
    /// other pages).
    /// </summary>
    public int RefillAt;

    /// <summary>The pool containing a block of this allocator: its address rounded down to the pool size.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Pool* Of(void* block) => (Pool*)((nuint)block & ~(nuint)(SizeClasses.PoolSize - 1));

    /// <summary>Prepares a pool for class <paramref name="classIndex"/>, owned by <paramref name="owner"/>.</summary>
    public static void Init(Pool* pool, int classIndex, Heap* owner, int arenaIndex, int poolIndex)
    {
        int size = SizeClasses.SizeOf(classIndex);
        pool->LocalFree = null;
        pool->Used = 0;
        pool->Capacity = SizeClasses.BlocksPerPool(classIndex);
        pool->Owner = owner;
        pool->Virgin = (byte*)pool + SizeClasses.PoolOverhead;
        pool->Limit = pool->Virgin + (pool->Capacity * size);
        pool->Next = null;
        pool->Prev = null;
        pool->BlockSize = size;
        pool->ClassIndex = (short)classIndex;
        pool->List = PoolList.None;
        pool->ThreadFree = 0;
        pool->ThreadFreeCount = 0;
        pool->ArenaIndex = arenaIndex;
        pool->PoolIndex = poolIndex;
        pool->RefillAt = pool->Capacity - Math.Max(1, pool->Capacity / 8);
    }

    /// <summary>Pushes a block freed by a thread that does not own the pool. Lock-free; any thread.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void PushThreadFree(Pool* pool, void* block)
    {
        Interlocked.Increment(ref pool->ThreadFreeCount); // before the push: the count never under-reports
        nint head = Volatile.Read(ref pool->ThreadFree);
        while (true)
        {
            *(nint*)block = head;
            nint seen = Interlocked.CompareExchange(ref pool->ThreadFree, (nint)block, head);
            if (seen == head)
            {
                return;
            }

            head = seen;
        }
    }

    /// <summary>
    /// Whether <paramref name="link"/>, read from a free block of <paramref name="pool"/>, can be the next free block:
    /// null (the end of the list) or an address inside the same pool. Anything else is a link a write after free (or an
    /// overrun of the block before) has overwritten; following it would read or write memory the pool does not own.
    /// </summary>
    /// <remarks>Cost: an xor and a compare (the null test only runs for links that leave the pool). The check keeps every
    /// dereference of a list inside mapped pool memory; it does not prove the link is a block boundary.</remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool LinkStaysInPool(Pool* pool, byte* link) => ((nuint)link ^ (nuint)pool) < SizeClasses.PoolSize || link == null;

    /// <summary>Whether <paramref name="block"/> is a non-null address inside <paramref name="pool"/> (one xor and compare).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool InPool(Pool* pool, byte* block) => ((nuint)block ^ (nuint)pool) < SizeClasses.PoolSize;

    /// <summary>
    /// Moves every block of <see cref="ThreadFree"/> to <see cref="LocalFree"/>. Only the owner thread, or the
    /// arena-lock holder for a pool without an owner, may call this. Returns the number of blocks collected, or −1 when
    /// the list is damaged: a link leaves the pool, or the list holds more blocks than the pool (a cycle). Then the
    /// blocks up to the damaged one are collected, the rest are dropped (never handed out again; they stay counted in
    /// <see cref="Used"/>, so the pool is never returned), and <paramref name="damaged"/> and <paramref name="link"/>
    /// say where.
    /// </summary>
    public static int CollectThreadFree(Pool* pool, out byte* damaged, out byte* link)
    {
        damaged = null;
        link = null;
        nint list = Interlocked.Exchange(ref pool->ThreadFree, 0);
        if (list == 0)
        {
            return 0;
        }

        int n = 1;
        byte* tail = (byte*)list;
        if (!InPool(pool, tail))
        {
            damaged = (byte*)pool; // the list head is stored in the pool header: the header was overwritten
            link = tail;
            return -1;
        }

        while (*(byte**)tail != null)
        {
            byte* next = *(byte**)tail;
            if (!InPool(pool, next) || n >= pool->Capacity)
            {
                damaged = tail;
                link = next;
                *(byte**)tail = null; // keep what was collected up to here; drop the rest
                break;
            }

            tail = next;
            n++;
        }

        *(byte**)tail = pool->LocalFree;
        pool->LocalFree = (byte*)list;
        Interlocked.Add(ref pool->ThreadFreeCount, -n); // before Used: readers never see too few blocks in use
        pool->Used -= n;
        Debug.Assert(damaged != null || pool->Used >= 0, "more blocks collected than were handed out: a double free or a foreign block");
        return damaged == null ? n : -1;
    }

    /// <summary>
    /// Threads up to one OS page of virgin blocks onto <see cref="LocalFree"/> (never touching memory long before it
    /// is needed, as pymalloc does). Returns false when the pool has no virgin blocks left.
    /// </summary>
    public static bool ExtendFromVirgin(Pool* pool)
    {
        if (pool->Virgin >= pool->Limit)
        {
            return false;
        }

        int size = pool->BlockSize;
        int count = Math.Max(1, 4096 / size);
        byte* first = pool->Virgin;
        byte* end = first + ((nint)count * size);
        if (end > pool->Limit)
        {
            end = pool->Limit;
        }

        byte* b = first;
        for (; b + size < end; b += size)
        {
            *(byte**)b = b + size;
        }

        *(byte**)b = pool->LocalFree;
        pool->LocalFree = first;
        pool->Virgin = end;
        return true;
    }
}

/// <summary>Values of <see cref="Pool.List"/>.</summary>
internal static class PoolList
{
    /// <summary>On no list (being set up, or free in its arena).</summary>
    public const byte None = 0;

    /// <summary>In its owner's list of pools with blocks to give.</summary>
    public const byte Available = 1;

    /// <summary>In its owner's list of pools with nothing left to give.</summary>
    public const byte Full = 2;

    /// <summary>Its owner thread ended; waiting to be adopted or to drain.</summary>
    public const byte Abandoned = 3;
}
