using System.Diagnostics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory;

/// <summary>The state of a block record.</summary>
internal enum BlockState : byte
{
    /// <summary>Allocated and not freed.</summary>
    Live = 1,

    /// <summary>Being reallocated by one thread; any other free or realloc of it is a race in the caller.</summary>
    Busy = 2,

    /// <summary>Freed; remembered for a while so that a second free is reported as one.</summary>
    Freed = 3,
}

/// <summary>What the registry knows about one block (a copy; the registry's own copy sits in its tables).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct BlockRecord
{
    /// <summary>The data pointer handed to the caller.</summary>
    public nuint Address;

    /// <summary>Bytes requested.</summary>
    public nuint Size;

    /// <summary>Number of the debug malloc/realloc call that made the block.</summary>
    public ulong Serial;

    /// <summary>Value of the call counter when the block was freed (state <see cref="BlockState.Freed"/>).</summary>
    public ulong FreedAfter;

    /// <summary>API id of the domain that allocated it: 'r', 'm' or 'o'.</summary>
    public byte Api;

    /// <summary>Live, busy or freed.</summary>
    public BlockState State;

    /// <summary>Whether the block has its own pages with a guard page after it.</summary>
    public bool GuardPage;
}

/// <summary>Outcome of a registry operation on a pointer.</summary>
internal enum RegistryStatus
{
    /// <summary>Done.</summary>
    Ok,

    /// <summary>No record: the pointer was never returned by the debug hooks, or its record has been recycled.</summary>
    NotFound,

    /// <summary>The block belongs to another domain; nothing changed.</summary>
    WrongApi,

    /// <summary>The block was freed already; nothing changed.</summary>
    AlreadyFreed,

    /// <summary>Another thread is reallocating the block right now; nothing changed.</summary>
    Busy,

    /// <summary>The block's guard bytes are damaged; the block stays live (it is leaked, not freed).</summary>
    Corrupt,
}

/// <summary>
/// Every block the debug hooks of one runtime handed out, keyed by its data pointer: the source of truth for
/// "is this a block, which domain made it, how big is it, was it freed already". Shared by the three domains' hooks,
/// so a block freed through the wrong domain is recognised as what it is.
/// </summary>
/// <remarks>
/// <code>
/// Layout (all native memory, outside every domain):
///
///   stripes[64]   one cache line each: a spin lock, counters, and two tables
///     slots       open addressing, linear probing, power-of-two capacity; a slot's Address is 0 (empty),
///                 1 (deleted) or a block's data pointer; grown or rehashed at 3/4 load
///     ring        the last RingSize blocks freed in this stripe, oldest first out: a freed record stays (and a
///                 second free of it is reported precisely) until the ring pushes it out; in guard-page mode the
///                 ring is also the quarantine that keeps freed pages inaccessible
///
///   A pointer's stripe is the top 6 bits of a Fibonacci hash of (address >> 4); its first slot is taken from the
///   middle bits, so stripe and slot are independent.
/// </code>
/// <para>Invariants, each under its stripe's lock: a data pointer has at most one record; <c>Used</c> counts
/// records, <c>Deleted</c> tombstones, <c>Live</c> records in state Live or Busy; a Freed record's serial is in the
/// ring unless a newer record for the same address replaced it.</para>
/// <para>Cost: one uncontended compare-exchange and a probe (usually one slot) per operation. 64 stripes keep
/// threads that allocate at the same time mostly on different locks.</para>
/// </remarks>
internal sealed unsafe class DebugBlockRegistry : IDisposable
{
    private const int StripeBits = 6;
    private const int StripeCount = 1 << StripeBits;
    private const int InitialCapacity = 64;
    private const nuint EmptySlot = 0;
    private const nuint DeletedSlot = 1;

    [StructLayout(LayoutKind.Explicit, Size = 64)]
    private struct Stripe
    {
        [FieldOffset(0)] public int Lock;        // 0 free, 1 held
        [FieldOffset(4)] public int Capacity;    // slots; a power of two, 0 until the first insert
        [FieldOffset(8)] public int Used;        // slots holding a record
        [FieldOffset(12)] public int Deleted;    // tombstones
        [FieldOffset(16)] public int Live;       // records in state Live or Busy
        [FieldOffset(20)] public int RingHead;   // where the next freed block goes (the oldest, once the ring is full)
        [FieldOffset(24)] public int RingCount;  // freed blocks remembered
        [FieldOffset(32)] public BlockRecord* Slots;
        [FieldOffset(40)] public RingEntry* Ring;
    }

    private struct RingEntry
    {
        public nuint Address;
        public ulong Serial;
    }

    private readonly Stripe* _stripes;
    private readonly int _ringSize;
    private bool _disposed;

    /// <summary>A registry that remembers the last <paramref name="ringSizePerStripe"/> freed blocks of each of its 64 stripes.</summary>
    public DebugBlockRegistry(int ringSizePerStripe)
    {
        Debug.Assert(ringSizePerStripe > 0, "a freed block must be remembered at least until the next free in its stripe");
        _ringSize = ringSizePerStripe;
        _stripes = (Stripe*)NativeMemory.AlignedAlloc((nuint)(sizeof(Stripe) * StripeCount), 64);
        NativeMemory.Clear(_stripes, (nuint)(sizeof(Stripe) * StripeCount));
        for (int i = 0; i < StripeCount; i++)
        {
            _stripes[i].Ring = (RingEntry*)NativeMemory.AllocZeroed((nuint)(sizeof(RingEntry) * ringSizePerStripe));
        }
    }

    /// <summary>Freed blocks remembered at most (the quarantine size in guard-page mode).</summary>
    public int FreedCapacity => _ringSize * StripeCount;

    /// <summary>Blocks live (or being reallocated) right now.</summary>
    public long LiveBlocks
    {
        get
        {
            long live = 0;
            for (int i = 0; i < StripeCount; i++)
            {
                live += Volatile.Read(ref _stripes[i].Live);
            }

            return live;
        }
    }

    /// <summary>Native bytes the registry uses for its tables.</summary>
    public long BytesUsed
    {
        get
        {
            long bytes = sizeof(Stripe) * StripeCount + (long)sizeof(RingEntry) * _ringSize * StripeCount;
            for (int i = 0; i < StripeCount; i++)
            {
                bytes += (long)Volatile.Read(ref _stripes[i].Capacity) * sizeof(BlockRecord);
            }

            return bytes;
        }
    }

    /// <summary>
    /// Records a new live block. False when the table could not grow (out of memory): the caller must then give the
    /// block back and fail the allocation. A freed record for the same address is replaced.
    /// </summary>
    public bool Insert(nuint address, nuint size, byte api, ulong serial, bool guardPage)
    {
        ulong hash = Hash(address);
        Stripe* stripe = StripeOf(hash);
        Enter(stripe);
        try
        {
            if ((stripe->Used + stripe->Deleted + 1) * 4 > stripe->Capacity * 3 && !Grow(stripe))
            {
                return false;
            }

            BlockRecord* slot = FindOrFree(stripe, address, hash, out bool found);
            if (!found)
            {
                if (slot->Address == DeletedSlot)
                {
                    stripe->Deleted--;
                }

                stripe->Used++;
            }
            else
            {
                Debug.Assert(slot->State == BlockState.Freed, "the allocator below returned a block that is still live");
            }

            *slot = new BlockRecord { Address = address, Size = size, Serial = serial, Api = api, State = BlockState.Live, GuardPage = guardPage };
            stripe->Live++;
            return true;
        }
        finally
        {
            Exit(stripe);
        }
    }

    /// <summary>
    /// Frees the record of <paramref name="address"/> if it is a live block of <paramref name="api"/> with intact
    /// guard bytes; otherwise changes nothing and says why. <paramref name="record"/> is the record as found.
    /// <paramref name="evicted"/> is a freed guard-page block that left the quarantine and must now be unmapped
    /// (Address 0 when none).
    /// </summary>
    public RegistryStatus TryFree(nuint address, byte api, ulong freedAfter, out BlockRecord record, out BlockRecord evicted)
    {
        ulong hash = Hash(address);
        Stripe* stripe = StripeOf(hash);
        evicted = default;
        Enter(stripe);
        try
        {
            BlockRecord* slot = Find(stripe, address, hash);
            if (slot == null)
            {
                record = default;
                return RegistryStatus.NotFound;
            }

            record = *slot;
            RegistryStatus status = CheckLive(slot, api);
            if (status == RegistryStatus.Ok)
            {
                MarkFreed(stripe, slot, freedAfter, ref evicted);
            }

            return status;
        }
        finally
        {
            Exit(stripe);
        }
    }

    /// <summary>
    /// Marks a live, intact block of <paramref name="api"/> as being reallocated, so that no other thread can free it
    /// meanwhile; finish with <see cref="EndRealloc"/>. Otherwise changes nothing and says why.
    /// </summary>
    public RegistryStatus TryBeginRealloc(nuint address, byte api, out BlockRecord record)
    {
        ulong hash = Hash(address);
        Stripe* stripe = StripeOf(hash);
        Enter(stripe);
        try
        {
            BlockRecord* slot = Find(stripe, address, hash);
            if (slot == null)
            {
                record = default;
                return RegistryStatus.NotFound;
            }

            record = *slot;
            RegistryStatus status = CheckLive(slot, api);
            if (status == RegistryStatus.Ok)
            {
                slot->State = BlockState.Busy;
            }

            return status;
        }
        finally
        {
            Exit(stripe);
        }
    }

    /// <summary>
    /// Ends a realloc begun with <see cref="TryBeginRealloc"/>: the old block is freed when <paramref name="moved"/>,
    /// live again otherwise (the realloc failed).
    /// </summary>
    public void EndRealloc(nuint address, bool moved, ulong freedAfter, out BlockRecord evicted)
    {
        ulong hash = Hash(address);
        Stripe* stripe = StripeOf(hash);
        evicted = default;
        Enter(stripe);
        try
        {
            BlockRecord* slot = Find(stripe, address, hash);
            Debug.Assert(slot != null && slot->State == BlockState.Busy, "a block being reallocated keeps its record");
            if (moved)
            {
                MarkFreed(stripe, slot, freedAfter, ref evicted);
            }
            else
            {
                slot->State = BlockState.Live;
            }
        }
        finally
        {
            Exit(stripe);
        }
    }

    /// <summary>The record of <paramref name="address"/>, in any state.</summary>
    public bool TryGet(nuint address, out BlockRecord record)
    {
        ulong hash = Hash(address);
        Stripe* stripe = StripeOf(hash);
        Enter(stripe);
        try
        {
            BlockRecord* slot = Find(stripe, address, hash);
            record = slot == null ? default : *slot;
            return slot != null;
        }
        finally
        {
            Exit(stripe);
        }
    }

    /// <summary>
    /// The live block whose header, data or trailer contains <paramref name="address"/> (for reports of interior
    /// pointers). Scans every stripe: a cold path.
    /// </summary>
    public bool TryFindContaining(nuint address, out BlockRecord record)
    {
        for (int i = 0; i < StripeCount; i++)
        {
            Stripe* stripe = _stripes + i;
            Enter(stripe);
            try
            {
                for (int s = 0; s < stripe->Capacity; s++)
                {
                    BlockRecord* slot = stripe->Slots + s;
                    nuint start = slot->Address - DebugLayout.HeaderSize;
                    if (slot->Address > DeletedSlot && slot->State != BlockState.Freed
                        && address >= start && address - start < slot->Size + DebugLayout.Overhead)
                    {
                        record = *slot;
                        return true;
                    }
                }
            }
            finally
            {
                Exit(stripe);
            }
        }

        record = default;
        return false;
    }

    /// <summary>Removes and returns the freed guard-page blocks still in quarantine (at dispose, to unmap them).</summary>
    public List<BlockRecord> TakeQuarantined()
    {
        var taken = new List<BlockRecord>();
        for (int i = 0; i < StripeCount; i++)
        {
            Stripe* stripe = _stripes + i;
            Enter(stripe);
            try
            {
                for (int s = 0; s < stripe->Capacity; s++)
                {
                    BlockRecord* slot = stripe->Slots + s;
                    if (slot->Address > DeletedSlot && slot->State == BlockState.Freed && slot->GuardPage)
                    {
                        taken.Add(*slot);
                        slot->Address = DeletedSlot;
                        stripe->Used--;
                        stripe->Deleted++;
                    }
                }
            }
            finally
            {
                Exit(stripe);
            }
        }

        return taken;
    }

    /// <summary>Frees the tables. No hook may use the registry afterwards.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        for (int i = 0; i < StripeCount; i++)
        {
            NativeMemory.Free(_stripes[i].Slots);
            NativeMemory.Free(_stripes[i].Ring);
        }

        NativeMemory.AlignedFree(_stripes);
    }

    // ---- primitives (under the stripe lock) ------------------------------------------------------------------

    private static RegistryStatus CheckLive(BlockRecord* slot, byte api)
    {
        if (slot->State == BlockState.Freed)
        {
            return RegistryStatus.AlreadyFreed;
        }

        if (slot->State == BlockState.Busy)
        {
            return RegistryStatus.Busy;
        }

        if (slot->Api != api)
        {
            return RegistryStatus.WrongApi; // CPython's first check: the API id
        }

        byte* data = (byte*)slot->Address;
        bool intact = DebugLayout.HeaderIntact(data, slot->Size, slot->Api)
            && (slot->GuardPage ? DebugLayout.SlackIntact(data, slot->Size) : DebugLayout.TrailerIntact(data, slot->Size, slot->Serial));
        return intact ? RegistryStatus.Ok : RegistryStatus.Corrupt;
    }

    private void MarkFreed(Stripe* stripe, BlockRecord* slot, ulong freedAfter, ref BlockRecord evicted)
    {
        slot->State = BlockState.Freed;
        slot->FreedAfter = freedAfter;
        stripe->Live--;

        RingEntry* entry = stripe->Ring + stripe->RingHead;
        if (stripe->RingCount == _ringSize)
        {
            // The oldest freed block leaves: forget its record unless the address was reused since.
            BlockRecord* old = Find(stripe, entry->Address, Hash(entry->Address));
            if (old != null && old->State == BlockState.Freed && old->Serial == entry->Serial)
            {
                evicted = *old;
                old->Address = DeletedSlot;
                stripe->Used--;
                stripe->Deleted++;
            }
        }
        else
        {
            stripe->RingCount++;
        }

        entry->Address = slot->Address;
        entry->Serial = slot->Serial;
        stripe->RingHead = stripe->RingHead + 1 == _ringSize ? 0 : stripe->RingHead + 1;
    }

    private static BlockRecord* Find(Stripe* stripe, nuint address, ulong hash)
    {
        int mask = stripe->Capacity - 1;
        if (mask < 0)
        {
            return null;
        }

        for (int i = SlotOf(hash, mask); ; i = (i + 1) & mask)
        {
            BlockRecord* slot = stripe->Slots + i;
            if (slot->Address == address)
            {
                return slot;
            }

            if (slot->Address == EmptySlot)
            {
                return null;
            }
        }
    }

    /// <summary>The record of <paramref name="address"/> (found), or the slot a new record should take.</summary>
    private static BlockRecord* FindOrFree(Stripe* stripe, nuint address, ulong hash, out bool found)
    {
        int mask = stripe->Capacity - 1;
        BlockRecord* firstDeleted = null;
        for (int i = SlotOf(hash, mask); ; i = (i + 1) & mask)
        {
            BlockRecord* slot = stripe->Slots + i;
            if (slot->Address == address)
            {
                found = true;
                return slot;
            }

            if (slot->Address == DeletedSlot)
            {
                firstDeleted = firstDeleted == null ? slot : firstDeleted;
            }
            else if (slot->Address == EmptySlot)
            {
                found = false;
                return firstDeleted != null ? firstDeleted : slot;
            }
        }
    }

    /// <summary>Doubles the table, or rehashes it in place of its tombstones. False when out of memory.</summary>
    private static bool Grow(Stripe* stripe)
    {
        int capacity = stripe->Capacity == 0 ? InitialCapacity
            : (stripe->Used + 1) * 2 > stripe->Capacity ? stripe->Capacity * 2
            : stripe->Capacity;
        BlockRecord* slots;
        try
        {
            slots = (BlockRecord*)NativeMemory.AllocZeroed((nuint)capacity * (nuint)sizeof(BlockRecord));
        }
        catch (OutOfMemoryException)
        {
            return false;
        }

        BlockRecord* old = stripe->Slots;
        for (int i = 0; i < stripe->Capacity; i++)
        {
            if (old[i].Address > DeletedSlot)
            {
                int mask = capacity - 1;
                int j = SlotOf(Hash(old[i].Address), mask);
                while (slots[j].Address != EmptySlot)
                {
                    j = (j + 1) & mask;
                }

                slots[j] = old[i];
            }
        }

        NativeMemory.Free(old);
        stripe->Slots = slots;
        stripe->Capacity = capacity;
        stripe->Deleted = 0;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Hash(nuint address) => ((ulong)address >> 4) * 0x9E37_79B9_7F4A_7C15UL;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Stripe* StripeOf(ulong hash) => _stripes + (int)(hash >> (64 - StripeBits));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int SlotOf(ulong hash, int mask) => (int)(hash >> 20) & mask;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Enter(Stripe* stripe)
    {
        if (Interlocked.CompareExchange(ref stripe->Lock, 1, 0) != 0)
        {
            EnterContended(stripe);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void EnterContended(Stripe* stripe)
    {
        var spin = default(SpinWait);
        do
        {
            spin.SpinOnce();
        }
        while (Volatile.Read(ref stripe->Lock) != 0 || Interlocked.CompareExchange(ref stripe->Lock, 1, 0) != 0);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Exit(Stripe* stripe) => Volatile.Write(ref stripe->Lock, 0);
}
