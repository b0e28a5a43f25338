using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The stripes of a <see cref="TraceTable"/>: 64 open-addressing tables chosen by address, each under a spin lock
/// of its own, that hold the traces a shadow word cannot (and every trace of a sampling session).
/// </summary>
/// <remarks>
/// <code>
///  stripes: hash = (address >> 4) * 2^64/φ     stripe = hash >> 58 (top 6 bits)     home slot = (hash >> 26) &amp; mask
///           slot = address (0: empty) | domain u32 | traceback id i32 | estimated size i64 | estimated count i64
///           doubles when three quarters full; never shrinks while the session lives
/// </code>
/// <para><b>Invariant.</b> Every stripe key lies between its home slot and the first empty slot after it.</para>
/// <para>A stripe's slots and count are changed, and the epoch they count for read, only by the thread that holds
/// its lock (any thread that records or untracks a block of the stripe); <see cref="Clear"/> holds every lock.</para>
/// </remarks>
internal sealed partial class TraceTable
{
    private const int StripeBits = 6;
    private const int StripeCount = 1 << StripeBits;
    private const int InitialSlots = 64;

    private readonly Stripe[] _stripes = new Stripe[StripeCount];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Hash(nuint address) => ((ulong)address >> 4) * 0x9E37_79B9_7F4A_7C15UL;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Stripe StripeOf(ulong hash) => _stripes[(int)(hash >> (64 - StripeBits))];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Home(ulong hash, int mask) => (int)(hash >> 26) & mask;

    private bool AddToStripe(ThreadShard shard, uint domain, nuint address, long estimatedSize, long estimatedCount, int traceback)
    {
        ulong hash = Hash(address);
        Stripe stripe = StripeOf(hash);
        long delta = estimatedSize;
        TraceEpoch epoch;
        stripe.Enter();
        try
        {
            epoch = _epoch; // under the lock: Clear switches epochs holding every stripe's
            Slot[] slots = stripe.Slots;
            int mask = slots.Length - 1;
            int i = Home(hash, mask);
            while (slots[i].Address != 0 && !(slots[i].Address == address && slots[i].Domain == domain))
            {
                i = (i + 1) & mask;
            }

            ref Slot slot = ref slots[i];
            if (slot.Address != 0)
            {
                delta -= slot.EstimatedSize; // tracking a block again updates its trace (PyTraceMalloc_Track)
            }
            else if ((stripe.Count + 1) * 4 > slots.Length * 3 && !Grow(stripe))
            {
                Interlocked.Increment(ref _failures);
                return false;
            }
            else
            {
                slots = stripe.Slots; // grown: find the slot again
                mask = slots.Length - 1;
                i = Home(hash, mask);
                while (slots[i].Address != 0)
                {
                    i = (i + 1) & mask;
                }

                stripe.Count++;
                Interlocked.Increment(ref _freeWork); // before the slot can be seen
                CountInBucket(hash, +1);
            }

            ref Slot target = ref slots[i];
            target.Address = address;
            target.Domain = domain;
            target.Traceback = traceback;
            target.EstimatedSize = estimatedSize;
            target.EstimatedCount = estimatedCount;
        }
        finally
        {
            stripe.Exit();
        }

        Account(shard, epoch, delta);
        return true;
    }

    /// <summary>Doubles a stripe's slots (the caller holds its lock); false when the memory is not there.</summary>
    private static bool Grow(Stripe stripe)
    {
        Slot[] old = stripe.Slots;
        Slot[] grown;
        try
        {
            grown = new Slot[old.Length * 2];
        }
        catch (OutOfMemoryException)
        {
            return false;
        }

        int mask = grown.Length - 1;
        foreach (ref readonly Slot slot in old.AsSpan())
        {
            if (slot.Address != 0)
            {
                int i = Home(Hash(slot.Address), mask);
                while (grown[i].Address != 0)
                {
                    i = (i + 1) & mask;
                }

                grown[i] = slot;
            }
        }

        stripe.Slots = grown;
        return true;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool RemoveFromStripe(ThreadShard shard, uint domain, nuint address, out Slot removed)
    {
        ulong hash = Hash(address);
        if (!StripeOccupied(hash))
        {
            removed = default;
            return false;
        }

        return RemoveLocked(shard, StripeOf(hash), hash, domain, address, out removed);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool RemoveLocked(ThreadShard shard, Stripe stripe, ulong hash, uint domain, nuint address, out Slot removed)
    {
        TraceEpoch epoch;
        stripe.Enter();
        try
        {
            epoch = _epoch;
            Slot[] slots = stripe.Slots;
            int mask = slots.Length - 1;
            int i = Home(hash, mask);
            while (true)
            {
                if (slots[i].Address == 0)
                {
                    removed = default;
                    return false;
                }

                if (slots[i].Address == address && slots[i].Domain == domain)
                {
                    break;
                }

                i = (i + 1) & mask;
            }

            removed = slots[i];

            // Backward shift: move later entries of the run into the hole when their home allows it.
            int hole = i;
            int j = i;
            while (true)
            {
                j = (j + 1) & mask;
                if (slots[j].Address == 0)
                {
                    break;
                }

                int home = Home(Hash(slots[j].Address), mask);
                bool movable = hole <= j ? home <= hole || home > j : home <= hole && home > j;
                if (movable)
                {
                    slots[hole] = slots[j];
                    hole = j;
                }
            }

            slots[hole] = default;
            stripe.Count--;
            CountInBucket(hash, -1);
            Interlocked.Decrement(ref _freeWork);
        }
        finally
        {
            stripe.Exit();
        }

        Account(shard, epoch, -removed.EstimatedSize);
        return true;
    }
}
