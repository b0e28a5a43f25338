namespace Runtime.Memory.Accounting;

/// <summary>
/// Adds to a shared total only while it stays within a limit, the check and the addition in one compare-exchange: the
/// one primitive behind every budget that admits growth atomically (a domain's published live bytes,
/// <see cref="MemoryAccounting"/>; a library tag's live bytes, <see cref="LibraryAccount"/>). Two threads can never both
/// be admitted into the same room.
/// </summary>
internal static class AtomicLimit
{
    /// <summary>
    /// Adds <paramref name="amount"/> (positive) to <paramref name="target"/> unless the sum would pass
    /// <paramref name="limit"/> or overflow; <paramref name="seen"/> is the total the addition was made to, or the one
    /// that refused it.
    /// </summary>
    public static bool TryAdd(ref long target, long amount, long limit, out long seen)
    {
        seen = Volatile.Read(ref target);
        while (true)
        {
            long total = seen + amount;
            if (total > limit || total < seen)
            {
                return false;
            }

            long previous = Interlocked.CompareExchange(ref target, total, seen);
            if (previous == seen)
            {
                return true;
            }

            seen = previous;
        }
    }
}
