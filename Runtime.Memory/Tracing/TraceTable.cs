using System.Runtime.CompilerServices;
using Runtime.Memory.Diagnostics;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The live traces of one tracing session: (trace domain, address) → (estimated size, estimated count, traceback id),
/// in 64 stripes chosen by address. Each stripe is an open-addressing table (linear probing, backward-shift deletion,
/// so no tombstones) of 32-byte slots held inline, under a spin lock of its own.
/// </summary>
/// <remarks>
/// <code>
///  hash   = (address >> 4) * 2^64/φ          stripe = hash >> 58 (top 6 bits)      home slot = (hash >> 26) &amp; mask
///  slot   = address (0: empty) | domain u32 | traceback id i32 | estimated size i64 | estimated count i64
///  growth = doubles when three quarters full; never shrinks while the session lives
/// </code>
/// <para>Invariants: a key is present iff the block was allocated (or tracked) while this session traced it and has
/// not been freed (or untracked) since; every present key lies between its home slot and the first empty slot after
/// it. <see cref="Current"/> is the sum of the present estimates; <see cref="Peak"/> the most it has been since the
/// session started or <see cref="ResetPeak"/>.</para>
/// <para>Cost per traced call: one uncontended compare-exchange and release store (the stripe lock), a probe that
/// usually touches one cache line of slots, and one atomic add on the session's current size (a compare with the
/// peak). A stripe with no entry is skipped without its lock, so sampling, which leaves most stripes empty, pays a
/// load. Stopping a session drops its table: a call still in flight writes into a table nobody reads.</para>
/// </remarks>
/// <remarks>
/// <para><b>The shadow (exact sessions).</b> Most traces of an exact session are not in the stripes at all but in a
/// shadow word at the block's address (<see cref="ShadowRadix{TSlot}"/>, 8 bytes per 16-byte granule), which the
/// allocating thread writes and the freeing thread clears, without a lock and without probing:</para>
/// <code>
///  bit 63 present | 62..56 session generation | 55..54 domain | 53..32 traceback id | 31..0 size
/// </code>
/// <para>A word counts only with the generation of this session, so a write that a thread still in flight makes after
/// its session stopped is ignored (and overwritten). Traces that do not fit a word (an extension's domain, a size of
/// 4 GiB or more, more than 4 million tracebacks, an address above 2^48) and every trace of a sampling session
/// (which carry estimates) go to the stripes.</para>
/// </remarks>
internal sealed unsafe class TraceTable
{
    private const int StripeBits = 6;
    private const int StripeCount = 1 << StripeBits;
    private const int InitialSlots = 64;
    private const ulong Present = 1UL << 63;
    private const int MaxShadowTraceback = (1 << 22) - 1;

    private readonly Stripe[] _stripes = new Stripe[StripeCount];
    private readonly ShadowRadix<ulong>? _shadow;
    private readonly ulong _generationBits;
    private long _current;
    private long _peak;
    private long _failures;

    /// <summary>A table for a session; <paramref name="shadow"/> (exact sessions on 64-bit) holds most traces, tagged
    /// with <paramref name="generation"/> (0 to 127).</summary>
    public TraceTable(ShadowRadix<ulong>? shadow = null, int generation = 0)
    {
        for (int i = 0; i < StripeCount; i++)
        {
            _stripes[i] = new Stripe();
        }

        _shadow = shadow;
        _generationBits = Present | ((ulong)(generation & 127) << 56);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool IsMine(ulong word) => (word & (0xFFUL << 56)) == _generationBits;

    private static uint DomainOf(ulong word) => (uint)(word >> 54) & 3;

    private static int TracebackOf(ulong word) => (int)(word >> 32) & MaxShadowTraceback;

    private static long SizeOf(ulong word) => (uint)word;

    private Slot Decode(nuint address, ulong word) => new()
    {
        Address = address,
        Domain = DomainOf(word),
        Traceback = TracebackOf(word),
        EstimatedSize = SizeOf(word),
        EstimatedCount = 1,
    };

    /// <summary>One slot: a trace, or empty when <see cref="Address"/> is 0.</summary>
    internal struct Slot
    {
        public nuint Address;
        public uint Domain;
        public int Traceback;
        public long EstimatedSize;
        public long EstimatedCount;
    }

    /// <summary>A stripe: its lock, its slots. The padding fields make each stripe object about 150 bytes, so the locks
    /// of neighbouring stripes never share a cache line (whatever order the runtime lays the fields out in).</summary>
    private sealed class Stripe
    {
#pragma warning disable CS0169, IDE0051 // padding
        private long _p0, _p1, _p2, _p3, _p4, _p5, _p6;
#pragma warning restore CS0169, IDE0051
        public int Lock;
        public volatile int Count;
        public Slot[] Slots = new Slot[InitialSlots];
#pragma warning disable CS0169, IDE0051
        private long _q0, _q1, _q2, _q3, _q4, _q5, _q6;
#pragma warning restore CS0169, IDE0051

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Enter()
        {
            if (Interlocked.CompareExchange(ref Lock, 1, 0) != 0)
            {
                EnterContended();
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private void EnterContended()
        {
            var spinner = default(SpinWait);
            while (Volatile.Read(ref Lock) != 0 || Interlocked.CompareExchange(ref Lock, 1, 0) != 0)
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Exit() => Volatile.Write(ref Lock, 0);
    }

    /// <summary>The sum of the live traces' (estimated) sizes.</summary>
    public long Current => Interlocked.Read(ref _current);

    /// <summary>The most <see cref="Current"/> has been.</summary>
    public long Peak => Interlocked.Read(ref _peak);

    /// <summary>Traces that could not be stored (a stripe could not grow); their blocks are served untraced.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>Counts a trace that could not be recorded for another reason than the table (see <see cref="MemoryTracer"/>).</summary>
    public void CountFailure() => Interlocked.Increment(ref _failures);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Hash(nuint address) => ((ulong)address >> 4) * 0x9E37_79B9_7F4A_7C15UL;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Stripe StripeOf(ulong hash) => _stripes[(int)(hash >> (64 - StripeBits))];

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Home(ulong hash, int mask) => (int)(hash >> 26) & mask;

    /// <summary>Records (or replaces) the trace of a block; false if it could not be stored.</summary>
    public bool Add(uint domain, nuint address, long estimatedSize, long estimatedCount, int traceback)
    {
        if (_shadow is { } shadow && domain <= 2 && estimatedCount == 1 && (ulong)estimatedSize <= uint.MaxValue
            && (uint)traceback <= MaxShadowTraceback)
        {
            ulong* word = address % 16 == 0 ? shadow.SlotOf(address, create: true) : null; // one word per 16-byte granule
            if (word != null)
            {
                // An exchange, so that a trace replaced here (a block tracked again) is taken exactly once between this
                // and a concurrent ClearTraces.
                ulong old = Interlocked.Exchange(ref *word, _generationBits | ((ulong)domain << 54) | ((ulong)traceback << 32) | (ulong)estimatedSize);
                AddToCurrent(estimatedSize - (IsMine(old) ? SizeOf(old) : 0));
                return true;
            }
        }

        return AddToStripe(domain, address, estimatedSize, estimatedCount, traceback);
    }

    private bool AddToStripe(uint domain, nuint address, long estimatedSize, long estimatedCount, int traceback)
    {
        ulong hash = Hash(address);
        Stripe stripe = StripeOf(hash);
        long delta = estimatedSize;
        stripe.Enter();
        try
        {
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

        AddToCurrent(delta);
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

    /// <summary>Takes a block's trace out; false when it has none. An empty stripe answers without its lock (inlined).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Remove(uint domain, nuint address, out Slot removed)
    {
        if (_shadow is { } shadow && address % 16 == 0)
        {
            ulong* word = shadow.SlotOf(address, create: false);
            if (word != null)
            {
                ulong code = Volatile.Read(ref *word);
                if (IsMine(code) && DomainOf(code) == domain && Interlocked.CompareExchange(ref *word, 0, code) == code)
                {
                    // The exchange makes a free and a concurrent ClearTraces take the trace exactly once between them.
                    AddToCurrent(-SizeOf(code));
                    removed = Decode(address, code);
                    return true;
                }
            }
        }

        ulong hash = Hash(address);
        Stripe stripe = StripeOf(hash);
        if (stripe.Count == 0)
        {
            removed = default;
            return false;
        }

        return RemoveLocked(stripe, hash, domain, address, out removed);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool RemoveLocked(Stripe stripe, ulong hash, uint domain, nuint address, out Slot removed)
    {
        stripe.Enter();
        try
        {
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
        }
        finally
        {
            stripe.Exit();
        }

        AddToCurrent(-removed.EstimatedSize);
        return true;
    }

    /// <summary>A block's trace, if it has one.</summary>
    public bool TryGet(uint domain, nuint address, out Slot found)
    {
        if (_shadow is { } shadow && address % 16 == 0 && shadow.SlotOf(address, create: false) is var word && word != null)
        {
            ulong code = Volatile.Read(ref *word);
            if (IsMine(code) && DomainOf(code) == domain)
            {
                found = Decode(address, code);
                return true;
            }
        }

        ulong hash = Hash(address);
        Stripe stripe = StripeOf(hash);
        found = default;
        if (stripe.Count == 0)
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

    /// <summary>Every live trace, copied stripe by stripe (each stripe consistent at the moment it was read).</summary>
    public List<Slot> Copy()
    {
        var traces = new List<Slot>();
        ScanShadow((address, _, code) => traces.Add(Decode(address, code)));
        foreach (Stripe stripe in _stripes)
        {
            stripe.Enter();
            try
            {
                foreach (ref readonly Slot slot in stripe.Slots.AsSpan())
                {
                    if (slot.Address != 0)
                    {
                        traces.Add(slot);
                    }
                }
            }
            finally
            {
                stripe.Exit();
            }
        }

        return traces;
    }

    /// <summary>Forgets every trace (tracemalloc's <c>clear_traces</c>); current and peak go to 0.</summary>
    public void Clear()
    {
        ScanShadow((_, word, code) =>
        {
            if (Interlocked.CompareExchange(ref *(ulong*)word, 0, code) == code)
            {
                AddToCurrent(-SizeOf(code)); // a free racing with the clear has either taken it already or finds it gone
            }
        });
        foreach (Stripe stripe in _stripes)
        {
            stripe.Enter();
            long removed = 0;
            try
            {
                foreach (ref readonly Slot slot in stripe.Slots.AsSpan())
                {
                    removed += slot.Address != 0 ? slot.EstimatedSize : 0;
                }

                Array.Clear(stripe.Slots);
                stripe.Count = 0;
            }
            finally
            {
                stripe.Exit();
            }

            AddToCurrent(-removed);
        }

        Interlocked.Exchange(ref _peak, Current);
    }

    /// <summary>Sets the peak to the current size (tracemalloc's <c>reset_peak</c>).</summary>
    public void ResetPeak() => Interlocked.Exchange(ref _peak, Current);

    /// <summary>Bytes the table itself holds: every stripe's slots, and the shadow's mapped chunks (resident only
    /// where touched).</summary>
    public long MemoryUsage()
    {
        long total = _shadow?.BytesUsed ?? 0;
        foreach (Stripe stripe in _stripes)
        {
            total += (long)stripe.Slots.Length * Unsafe.SizeOf<Slot>() + 128;
        }

        return total;
    }

    /// <summary>Traces present.</summary>
    public int Count
    {
        get
        {
            int n = 0;
            ScanShadow((_, _, _) => n++);
            foreach (Stripe stripe in _stripes)
            {
                n += stripe.Count;
            }

            return n;
        }
    }

    /// <summary>Calls <paramref name="visitWord"/> with the address, the word's location and the value read once (and
    /// found to be this session's) of every shadow trace (a scan of every chunk).</summary>
    private void ScanShadow(Action<nuint, nint, ulong> visitWord)
    {
        if (_shadow is not { } shadow)
        {
            return;
        }

        shadow.ForEachChunk((chunkBase, chunk) =>
        {
            var words = new ReadOnlySpan<ulong>((void*)chunk, ShadowRadix<ulong>.ChunkSlots);
            int i = 0;
            while (i < words.Length)
            {
                int next = words[i..].IndexOfAnyExcept(0UL);
                if (next < 0)
                {
                    break;
                }

                i += next;
                ulong code = Volatile.Read(ref *((ulong*)chunk + i));
                if (IsMine(code))
                {
                    visitWord(chunkBase + ((nuint)i << ShadowRadix<ulong>.GranuleBits), chunk + (i * sizeof(ulong)), code);
                }

                i++;
            }
        });
    }

    private void AddToCurrent(long delta)
    {
        long current = Interlocked.Add(ref _current, delta);
        if (current > Volatile.Read(ref _peak))
        {
            Accounting.AtomicMax.Raise(ref _peak, current);
        }
    }
}
