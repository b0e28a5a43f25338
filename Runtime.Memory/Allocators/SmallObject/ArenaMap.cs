using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Allocators.SmallObject;

/// <summary>
/// Which addresses belong to this allocator's arenas, answered in O(1) without touching the memory asked about
/// (CPython 3.10's radix tree, bpo-37448, in two levels).
/// </summary>
/// <remarks>
/// <code>
///  address bits:  63..48 | 47..34 (top index) | 33..20 (leaf index) | 19..0 (offset in a 1 MiB slot)
///                 must be 0
/// </code>
/// Each 1 MiB slot of address space has an entry: <c>EndBefore</c>, where an arena that began in the previous slot
/// ends (it covers [0, EndBefore)), and <c>BeginPlusOne</c>, one more than the offset where an arena begins in this
/// slot (it covers [BeginPlusOne - 1, 1 MiB)); zero means none. An arena aligned to 1 MiB fills one slot; any other
/// arena covers the end of one slot and the start of the next. Each entry also holds the size class of each of the 64
/// pools of its slot (a byte each), for the tracer's lookups on free. The top level (128 KiB of pointers) and each leaf
/// (1.1 MiB of entries, 72 bytes each) come from calloc, so untouched parts cost no resident memory. Leaves are freed with the map.
/// Entries change under the allocator's arena lock; lookups read without a lock. Only addresses below 2^48 can be
/// arenas; an arena the arena allocator places higher is refused.
/// </remarks>
internal sealed unsafe class ArenaMap : IDisposable
{
    private const int TopBits = 14;
    private const int LeafBits = 14;
    private const int SlotBits = SizeClasses.ArenaBits;
    private const int AddressBits = TopBits + LeafBits + SlotBits; // 48

    private const int PoolsPerSlot = 1 << (SlotBits - SizeClasses.PoolBits); // 64

    [StructLayout(LayoutKind.Sequential)]
    private struct Coverage
    {
        public int EndBefore;
        public int BeginPlusOne;
        public PoolClasses Classes;
    }

    /// <summary>The size class of each pool of a slot, as its pool was last carved (<see cref="SetPoolClass"/>).</summary>
    [InlineArray(PoolsPerSlot)]
    private struct PoolClasses
    {
        private byte _first;
    }

    /// <summary>A top level with no leaves, shared by disposed maps.</summary>
    private static readonly nint s_emptyTop = (nint)NativeMemory.AllocZeroed((nuint)(1 << TopBits), (nuint)sizeof(Coverage*));

    private Coverage** _top = (Coverage**)NativeMemory.AllocZeroed((nuint)(1 << TopBits), (nuint)sizeof(Coverage*));

    /// <summary>Whether <paramref name="p"/> lies in one of the arenas marked here.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Contains(void* p)
    {
        Coverage* c = Lookup((ulong)p);
        return c != null && Covers(c, (ulong)p);
    }

    /// <summary>The entry of <paramref name="a"/>'s 1 MiB slot, or null when no arena can be there (above 2^48, or no
    /// leaf). A lookup: never creates.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Coverage* Lookup(ulong a)
    {
        if ((a >> AddressBits) != 0)
        {
            return null;
        }

        Coverage* leaf = _top[a >> (LeafBits + SlotBits)];
        return leaf == null ? null : &leaf[(a >> SlotBits) & ((1 << LeafBits) - 1)];
    }

    /// <summary>Whether the arena part of slot entry <paramref name="c"/> covers <paramref name="a"/>, an address of its slot.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool Covers(Coverage* c, ulong a)
    {
        int offset = (int)(a & ((1 << SlotBits) - 1));
        return offset < c->EndBefore || (c->BeginPlusOne != 0 && offset >= c->BeginPlusOne - 1);
    }

    /// <summary>
    /// Records that the pool at <paramref name="pool"/>, in an arena marked here, is carved for class
    /// <paramref name="classIndex"/>. The pool's owner, before any of its blocks is handed out.
    /// </summary>
    public void SetPoolClass(void* pool, int classIndex)
    {
        Coverage* entry = Entry((ulong)pool, create: false);
        System.Diagnostics.Debug.Assert(entry != null, "the pool's arena is marked");
        if (entry != null)
        {
            entry->Classes[(int)((ulong)pool >> SizeClasses.PoolBits) & (PoolsPerSlot - 1)] = (byte)classIndex;
        }
    }

    /// <summary>
    /// <see cref="Contains"/> and, when <paramref name="p"/> lies in an arena, the size class of its pool as last carved
    /// (else −1), from the same entry. For a free of a live block the class is its block's: read from the map, whose
    /// entries stay in the caches, rather than from the pool's header, so that a lookup keyed by the block's class (the
    /// tracer's) need not wait for the header to come from memory.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int PoolClassIfContains(void* p)
    {
        ulong a = (ulong)p;
        Coverage* c = Lookup(a);
        return c != null && Covers(c, a) ? c->Classes[(int)(a >> SizeClasses.PoolBits) & (PoolsPerSlot - 1)] : -1;
    }

    /// <summary>Whether an arena at <paramref name="arena"/> can be represented (its whole range is below 2^48).</summary>
    public static bool CanMap(void* arena) => ((ulong)arena + SizeClasses.ArenaSize) >> AddressBits == 0;

    /// <summary>Marks (or unmarks) the arena at <paramref name="arena"/>. Caller holds the arena lock. False when out of memory.</summary>
    public bool Mark(void* arena, bool used)
    {
        ulong a = (ulong)arena;
        int offset = (int)(a & ((1 << SlotBits) - 1));
        Coverage* first = Entry(a, create: used);
        if (first == null)
        {
            return !used;
        }

        if (offset == 0)
        {
            first->BeginPlusOne = used ? 1 : 0;
            return true;
        }

        Coverage* second = Entry(a + SizeClasses.ArenaSize, create: used);
        if (second == null)
        {
            return !used;
        }

        first->BeginPlusOne = used ? offset + 1 : 0;
        second->EndBefore = used ? offset : 0;
        return true;
    }

    private Coverage* Entry(ulong address, bool create)
    {
        ulong topIndex = address >> (LeafBits + SlotBits);
        Coverage* leaf = _top[topIndex];
        if (leaf == null)
        {
            if (!create)
            {
                return null;
            }

            try
            {
                leaf = (Coverage*)NativeMemory.AllocZeroed((nuint)(1 << LeafBits), (nuint)sizeof(Coverage));
            }
            catch (OutOfMemoryException)
            {
                return null;
            }

            Volatile.Write(ref *(nint*)&_top[topIndex], (nint)leaf);
        }

        return &leaf[(address >> SlotBits) & ((1 << LeafBits) - 1)];
    }

    /// <summary>Frees the map's own memory. Only when no arena is left and no thread can look up a pointer.</summary>
    public void Dispose()
    {
        if (_top == (Coverage**)s_emptyTop)
        {
            return;
        }

        for (int i = 0; i < 1 << TopBits; i++)
        {
            NativeMemory.Free(_top[i]);
        }

        NativeMemory.Free(_top);
        _top = (Coverage**)s_emptyTop; // lookups after disposal answer "not ours" instead of dereferencing freed memory
    }
}
