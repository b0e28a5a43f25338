namespace Runtime.Memory.Accounting;

/// <summary>Raises a shared maximum with compare-exchange: the one primitive behind every atomically kept peak.</summary>
internal static class AtomicMax
{
    /// <summary>Makes <paramref name="target"/> at least <paramref name="value"/>; concurrent raises keep the largest.</summary>
    public static void Raise(ref long target, long value)
    {
        long seen = Interlocked.Read(ref target);
        while (value > seen)
        {
            long previous = Interlocked.CompareExchange(ref target, value, seen);
            if (previous == seen)
            {
                return;
            }

            seen = previous;
        }
    }
}
