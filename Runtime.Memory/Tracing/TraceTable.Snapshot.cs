using System.Runtime.CompilerServices;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The reads of a whole <see cref="TraceTable"/>: <see cref="Copy"/> (a snapshot's traces), <see cref="Count"/> and
/// <see cref="MemoryUsage"/>.
/// </summary>
/// <remarks>
/// On any thread, while others trace; they write nothing. A copy takes each stripe under its lock (so each stripe is
/// consistent at the moment it was read, the table as a whole is not) and each shadow word of the current epoch as
/// read once; the count and the memory use read the stripes without their locks.
/// </remarks>
internal sealed partial class TraceTable
{
    /// <summary>Every live trace, copied stripe by stripe (each stripe consistent at the moment it was read).</summary>
    public List<Slot> Copy()
    {
        var traces = new List<Slot>();
        TraceEpoch epoch = _epoch;
        ScanShadow((address, _, code) =>
        {
            if (IsOf(epoch, code))
            {
                traces.Add(DecodeAt(address, code));
            }
        });
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

    /// <summary>Bytes the table itself holds: every stripe's slots, and the shadow's mapped chunks (resident only
    /// where touched).</summary>
    public long MemoryUsage()
    {
        long total = (_shadow?.BytesUsed ?? 0) + ((long)_buckets.Length * sizeof(int)) + ((long)_occupied.Length * sizeof(ulong));
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
            TraceEpoch epoch = _epoch;
            ScanShadow((_, _, code) => n += IsOf(epoch, code) ? 1 : 0);
            foreach (Stripe stripe in _stripes)
            {
                n += stripe.Count;
            }

            return n;
        }
    }
}
