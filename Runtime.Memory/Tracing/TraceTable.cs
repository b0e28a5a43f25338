using System.Runtime.CompilerServices;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The live traces of one tracing session: (trace domain, address) to (size, estimate, traceback), in 64 stripes
/// chosen by address, each a dictionary under its own lock, so threads allocating different blocks rarely meet.
/// </summary>
/// <remarks>
/// <para>Invariants: a key is present iff the block was allocated (or tracked) while this session traced it and has
/// not been freed (or untracked) since. <see cref="Current"/> is the sum of the estimates of the entries present;
/// <see cref="Peak"/> is the largest value <see cref="Current"/> has had since the session started or the last
/// <see cref="ResetPeak"/>.</para>
/// <para>Cost per traced call: one stripe lock, one dictionary operation, one atomic add on the session's current
/// (and a compare with the peak). A stripe with no entry is skipped without its lock (sampling leaves most empty).
/// Stopping a session drops its table: a call still in flight inserts into a table nobody reads.</para>
/// </remarks>
internal sealed class TraceTable
{
    private const int StripeBits = 6;
    private const int StripeCount = 1 << StripeBits;

    private readonly Stripe[] _stripes = new Stripe[StripeCount];
    private long _current;
    private long _peak;
    private long _failures;

    public TraceTable()
    {
        for (int i = 0; i < StripeCount; i++)
        {
            _stripes[i] = new Stripe();
        }
    }

    private sealed class Stripe
    {
        public readonly Lock Lock = new();
        public readonly Dictionary<TraceKey, TraceEntry> Traces = [];
        public volatile int Count;
    }

    /// <summary>The sum of the live traces' (estimated) sizes.</summary>
    public long Current => Interlocked.Read(ref _current);

    /// <summary>The most <see cref="Current"/> has been.</summary>
    public long Peak => Interlocked.Read(ref _peak);

    /// <summary>Traces that could not be stored (the table could not grow); their blocks are served untraced.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Stripe StripeOf(nuint address) =>
        _stripes[(int)(((ulong)address >> 4) * 0x9E37_79B9_7F4A_7C15UL >> (64 - StripeBits))];

    /// <summary>Records (or replaces) the trace of a block; false if it could not be stored.</summary>
    public bool Add(uint domain, nuint address, in TraceEntry entry)
    {
        Stripe stripe = StripeOf(address);
        long delta = entry.EstimatedSize;
        try
        {
            lock (stripe.Lock)
            {
                var key = new TraceKey(domain, address);
                ref TraceEntry slot = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(stripe.Traces, key, out bool existed);
                if (existed)
                {
                    delta -= slot.EstimatedSize; // tracking a block again updates its trace (PyTraceMalloc_Track)
                }

                slot = entry;
                stripe.Count = stripe.Traces.Count;
            }
        }
        catch (OutOfMemoryException)
        {
            Interlocked.Increment(ref _failures);
            return false;
        }

        AddToCurrent(delta);
        return true;
    }

    /// <summary>Takes a block's trace out; false when it has none.</summary>
    public bool Remove(uint domain, nuint address, out TraceEntry entry)
    {
        Stripe stripe = StripeOf(address);
        if (stripe.Count == 0)
        {
            entry = default;
            return false;
        }

        lock (stripe.Lock)
        {
            if (!stripe.Traces.Remove(new TraceKey(domain, address), out entry))
            {
                return false;
            }

            stripe.Count = stripe.Traces.Count;
        }

        AddToCurrent(-entry.EstimatedSize);
        return true;
    }

    /// <summary>A block's trace, if it has one.</summary>
    public bool TryGet(uint domain, nuint address, out TraceEntry entry)
    {
        Stripe stripe = StripeOf(address);
        if (stripe.Count == 0)
        {
            entry = default;
            return false;
        }

        lock (stripe.Lock)
        {
            return stripe.Traces.TryGetValue(new TraceKey(domain, address), out entry);
        }
    }

    /// <summary>Every live trace, copied stripe by stripe (each stripe consistent at the moment it was read).</summary>
    public List<(TraceKey Key, TraceEntry Entry)> Copy()
    {
        var traces = new List<(TraceKey, TraceEntry)>();
        foreach (Stripe stripe in _stripes)
        {
            lock (stripe.Lock)
            {
                foreach (KeyValuePair<TraceKey, TraceEntry> pair in stripe.Traces)
                {
                    traces.Add((pair.Key, pair.Value));
                }
            }
        }

        return traces;
    }

    /// <summary>Forgets every trace (tracemalloc's <c>clear_traces</c>); current and peak go to 0.</summary>
    public void Clear()
    {
        foreach (Stripe stripe in _stripes)
        {
            lock (stripe.Lock)
            {
                long removed = 0;
                foreach (TraceEntry entry in stripe.Traces.Values)
                {
                    removed += entry.EstimatedSize;
                }

                stripe.Traces.Clear();
                stripe.Count = 0;
                AddToCurrent(-removed);
            }
        }

        Interlocked.Exchange(ref _peak, Current);
    }

    /// <summary>Sets the peak to the current size (tracemalloc's <c>reset_peak</c>).</summary>
    public void ResetPeak() => Interlocked.Exchange(ref _peak, Current);

    /// <summary>
    /// Bytes the table itself holds: every stripe's dictionary at its capacity (an entry is a hash, a link, the key and
    /// the value; a bucket is an int). Tracebacks and names are counted by the tracer's intern tables.
    /// </summary>
    public long MemoryUsage()
    {
        long entryBytes = Unsafe.SizeOf<TraceKey>() + Unsafe.SizeOf<TraceEntry>() + 2 * sizeof(int) + sizeof(int);
        long total = 0;
        foreach (Stripe stripe in _stripes)
        {
            lock (stripe.Lock)
            {
                total += stripe.Traces.EnsureCapacity(0) * entryBytes;
            }
        }

        return total;
    }

    public int Count
    {
        get
        {
            int n = 0;
            foreach (Stripe stripe in _stripes)
            {
                n += stripe.Count;
            }

            return n;
        }
    }

    private void AddToCurrent(long delta)
    {
        long current = Interlocked.Add(ref _current, delta);
        long peak = Interlocked.Read(ref _peak);
        while (current > peak)
        {
            long seen = Interlocked.CompareExchange(ref _peak, current, peak);
            if (seen == peak)
            {
                break;
            }

            peak = seen;
        }
    }
}

/// <summary>A traced block's key: its trace domain (0 raw, 1 mem, 2 obj, or an extension's number) and address.</summary>
internal readonly record struct TraceKey(uint Domain, nuint Address);

/// <summary>
/// A traced block: the size asked for, what it stands for (the size itself when tracing exactly; scaled up when it was
/// sampled), and where it was allocated.
/// </summary>
internal readonly record struct TraceEntry(nuint Size, long EstimatedSize, long EstimatedCount, Traceback Traceback);
