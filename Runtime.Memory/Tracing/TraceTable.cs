using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;
using Runtime.Memory.Diagnostics;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The live traces of one tracing session: (trace domain, address) → (estimated size, estimated count, traceback id).
/// Exact sessions keep most traces in a shadow word per block; everything else goes to 64 stripes chosen by address,
/// each an open-addressing table (linear probing, backward-shift deletion, so no tombstones) of 32-byte slots held
/// inline, under a spin lock of its own.
/// </summary>
/// <remarks>
/// <para><b>Invariants.</b> A key is present (a word of the current generation, or a stripe slot) iff the block was
/// allocated or tracked in the current epoch and has not been freed or untracked since. Stripe slots are changed,
/// and the epoch they count for is read, under the stripe's lock, and <see cref="Clear"/> holds every stripe lock
/// while it switches epochs, so a stripe holds only current traces.</para>
/// <para><b>Cost per exact traced pair:</b> two radix lookups (and on free the arena-map lookup and a multiply for the dense slot), a load and a store of the word each way, and a few plain
/// adds to the thread's shard. A free whose hash bucket (one of 4,096, each inside one stripe) counts no trace skips
/// the stripes without a lock, so sampling, which keeps few traces, pays one load per free.</para>
/// <para><b>Parts.</b> This file: construction, and the calls for one block (record, untrack, look up), which try
/// the shadow and then the stripes. The rest, a concern a file: TraceTable.Shadow.cs (the shadow word: layout,
/// codec, removal, scan), TraceTable.Pooled.cs (the domains' fast path for pool blocks: dense words through the
/// thread's pool cache), TraceTable.Stripes.cs (the striped tables; their types in TraceTable.Stripe.cs and
/// TraceTable.Slot.cs), TraceTable.FreeFilter.cs (what tells a free it has nothing to do), TraceTable.Epoch.cs
/// (epochs, <see cref="Clear"/>, the traced-memory counters), TraceTable.Snapshot.cs (reads of the whole table);
/// <see cref="TraceEpoch"/> in TraceEpoch.cs.</para>
/// <para><b>Threads.</b> Each thread records and untracks the blocks it allocates and frees, on its own
/// <see cref="ThreadShard"/>, taking no lock but a stripe's; <see cref="Clear"/>, <see cref="ResetPeak"/> and the
/// reads of the whole table may run meanwhile, on any thread.</para>
/// </remarks>
internal sealed unsafe partial class TraceTable
{
    private long _failures;

    /// <summary>
    /// A table for a session whose threads keep their pending traced bytes in <paramref name="accounting"/>'s shards;
    /// <paramref name="shadow"/> (exact sessions on 64-bit) holds most traces, tagged with generations (0 to 127) that
    /// <paramref name="nextGeneration"/> hands out, one per epoch, shared by every table on that shadow.
    /// </summary>
    public TraceTable(MemoryAccounting accounting, ShadowRadix<ulong>? shadow, Func<int> nextGeneration)
    {
        for (int i = 0; i < StripeCount; i++)
        {
            _stripes[i] = new Stripe();
        }

        _accounting = accounting;
        _shadow = shadow;
        _freeWork = shadow is null ? 0 : FreeWorkShadow;
        _nextGeneration = nextGeneration;
        _epoch = new TraceEpoch(Present | ((ulong)(nextGeneration() & 127) << 56));
    }

    /// <summary>Traces that could not be stored (a stripe could not grow); their blocks are served untraced.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Counts a trace that could not be recorded for another reason than the table (see <see cref="MemoryTracer"/>).</summary>
    public void CountFailure() => Interlocked.Increment(ref _failures);

    /// <summary>Records (or replaces) the trace of a block; false if it could not be stored.</summary>
    public bool Add(uint domain, nuint address, long estimatedSize, long estimatedCount, int traceback) =>
        Add(CurrentShard(), domain, address, 0, 0, estimatedSize, estimatedCount, traceback);

    /// <summary>
    /// Records (or replaces) the trace of a block, on the calling thread's <paramref name="shard"/>; false if it could not
    /// be stored. <paramref name="dense"/> is the block's dense slot when it is a pool block of the small-object
    /// allocator (<see cref="SmallObjectAllocator.DenseSlotOf"/>), of class <paramref name="denseClass"/>, else 0.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Add(ThreadShard shard, uint domain, nuint address, nuint dense, int denseClass, long estimatedSize, long estimatedCount, int traceback)
    {
        // The domains' traced malloc, inlined: a pool block's word at its dense slot.
        if (_shadow is { } shadow && dense != 0 && domain <= 2 && estimatedCount == 1 && (ulong)estimatedSize <= MaxDenseSize
            && (uint)traceback <= MaxShadowTraceback && shadow.SlotOf(dense, create: true) is var slot && slot != null)
        {
            TraceEpoch epoch = _epoch;
            ulong old = Volatile.Read(ref *slot); // this epoch's only if the block's free was missed (a wrong-domain free)
            Volatile.Write(ref *slot, epoch.GenerationBits | ((ulong)domain << 54) | ((ulong)traceback << 32) | ((ulong)(uint)denseClass << 16) | (ulong)estimatedSize);
            Account(shard, epoch, estimatedSize - (IsOf(epoch, old) ? SizeOf(old, dense: true) : 0));
            return true;
        }

        return AddByAddress(shard, domain, address, estimatedSize, estimatedCount, traceback);
    }

    /// <summary>Records a trace keyed by the block's address: a shadow word when it fits, else a stripe slot.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool AddByAddress(ThreadShard shard, uint domain, nuint address, long estimatedSize, long estimatedCount, int traceback)
    {
        if (_shadow is { } shadow && domain <= 2 && estimatedCount == 1 && (uint)traceback <= MaxShadowTraceback)
        {
            ulong* word = IsRawKey(address) && (ulong)estimatedSize <= uint.MaxValue ? shadow.SlotOf(address, create: true) : null;
            if (word != null)
            {
                TraceEpoch epoch = _epoch;
                ulong old = Volatile.Read(ref *word); // this epoch's only when the block is tracked again (PyTraceMalloc_Track)
                Volatile.Write(ref *word, epoch.GenerationBits | ((ulong)domain << 54) | ((ulong)traceback << 32) | (ulong)estimatedSize);
                Account(shard, epoch, estimatedSize - (IsOf(epoch, old) ? SizeOf(old, dense: false) : 0));
                return true;
            }
        }

        return AddToStripe(shard, domain, address, estimatedSize, estimatedCount, traceback);
    }

    /// <summary>Takes a block's trace out; false when it has none.</summary>
    public bool Remove(uint domain, nuint address, out Slot removed) => Remove(CurrentShard(), domain, address, 0, out removed);

    /// <summary>Takes a block's trace out, on the calling thread's <paramref name="shard"/>, and returns it; false when it
    /// has none. <paramref name="dense"/> as for <see cref="Add(ThreadShard, uint, nuint, nuint, int, long, long, int)"/>.</summary>
    public bool Remove(ThreadShard shard, uint domain, nuint address, nuint dense, out Slot removed)
    {
        if (RemoveFromShadow(shard, domain, address, dense, out ulong code, out bool wasDense))
        {
            removed = Decode(address, code, wasDense);
            return true;
        }

        return RemoveFromStripe(shard, domain, address, out removed);
    }

    /// <summary>Takes a block's trace out, on the calling thread's <paramref name="shard"/> (the domains' free path,
    /// inlined: a shadow word, or an empty stripe, answers without a lock).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Remove(ThreadShard shard, uint domain, nuint address, nuint dense)
    {
        if (!RemoveFromShadow(shard, domain, address, dense, out _, out _))
        {
            ulong hash = Hash(address);
            if (StripeOccupied(hash))
            {
                RemoveLocked(shard, StripeOf(hash), hash, domain, address, out _);
            }
        }
    }

    /// <summary>The trace of a block with no dense word of this epoch: keyed by its address, in the shadow or a stripe.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RemoveByAddress(ThreadShard shard, uint domain, nuint address)
    {
        if (_shadow is { } shadow && RemoveRawFromShadow(shard, shadow, _epoch, domain, address, out _))
        {
            return;
        }

        ulong hash = Hash(address);
        if (StripeOccupied(hash))
        {
            RemoveLocked(shard, StripeOf(hash), hash, domain, address, out _);
        }
    }

    /// <summary>A block's trace, if it has one (<paramref name="dense"/>: its dense slot, or 0).</summary>
    public bool TryGet(uint domain, nuint address, nuint dense, out Slot found)
    {
        if (_shadow is { } shadow)
        {
            TraceEpoch epoch = _epoch;
            for (int pass = dense != 0 ? 0 : 1; pass < 2; pass++)
            {
                nuint key = pass == 0 ? dense : address;
                ulong* word = pass == 0 || IsRawKey(address) ? shadow.SlotOf(key, create: false) : null;
                if (word != null)
                {
                    ulong code = Volatile.Read(ref *word);
                    if (IsOf(epoch, code) && DomainOf(code) == domain)
                    {
                        found = Decode(address, code, dense: pass == 0);
                        return true;
                    }
                }
            }
        }

        ulong hash = Hash(address);
        Stripe stripe = StripeOf(hash);
        found = default;
        if (!StripeOccupied(hash))
        {
            return false;
        }

        stripe.Enter();
        try
        {
            Slot[] slots = stripe.Slots;
            int mask = slots.Length - 1;
            for (int i = Home(hash, mask); slots[i].Address != 0; i = (i + 1) & mask)
            {
                if (slots[i].Address == address && slots[i].Domain == domain)
                {
                    found = slots[i];
                    return true;
                }
            }

            return false;
        }
        finally
        {
            stripe.Exit();
        }
    }
}
