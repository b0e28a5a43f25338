using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The epochs of a <see cref="TraceTable"/> and its traced memory: the current <see cref="TraceEpoch"/>,
/// <see cref="Clear"/> that begins the next one, and the counting of traced bytes on the threads' shards.
/// </summary>
/// <remarks>
/// <para><b>Traced memory</b> is kept as the domains' accounting keeps live bytes: each thread adds its changes to a
/// pending count in its own <see cref="ThreadShard"/> (tagged with the epoch it counts for) and publishes it to the
/// epoch with one atomic add per <see cref="PublishThreshold"/> bytes. The current size is the published sum plus every
/// live shard's pending count of the current epoch. The peak is raised when a thread's estimate (published + its own
/// pending) exceeds it: exact while one thread traces, within (T − 1) × <see cref="PublishThreshold"/> bytes with T
/// threads; a read never reports less than the current size it summed.</para>
/// <para><b>Invariant.</b> An epoch's current size is the sum of its present estimates, once no call is in
/// flight.</para>
/// <para>A shard's pending count is written only by its thread; the epoch's published sum by atomic adds, its peak
/// by an atomic raise (any thread) or <see cref="ResetPeak"/>. The current epoch is replaced only by
/// <see cref="Clear"/>, under its own lock and every stripe's.</para>
/// </remarks>
internal sealed unsafe partial class TraceTable
{
    /// <summary>Net traced bytes a thread accumulates before publishing them with one atomic add (as the accounting's).</summary>
    internal const long PublishThreshold = MemoryAccounting.PublishThreshold;

    private readonly Func<int> _nextGeneration;
    private readonly MemoryAccounting _accounting;
    private readonly Lock _clearLock = new();
    private volatile TraceEpoch _epoch;

    /// <summary>The calling thread's shard, for the calls that do not come with one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ThreadShard CurrentShard() => _accounting.CurrentShard();

    /// <summary>The sum of the live traces' (estimated) sizes: the current epoch's published bytes and every thread's
    /// pending bytes for it (exact when no thread is tracing a call).</summary>
    public long Current => CurrentOf(_epoch);

    private long CurrentOf(TraceEpoch epoch)
    {
        long pending = _accounting.SumTracePending(epoch); // first: it folds the threads that have ended into Published
        return Volatile.Read(ref epoch.Published) + pending;
    }

    /// <summary>The most <see cref="Current"/> has been in this epoch, as far as the threads' estimates saw it.</summary>
    public long Peak => Volatile.Read(ref _epoch.Peak);

    /// <summary>
    /// Forgets every trace (tracemalloc's <c>clear_traces</c>): a new epoch begins, with current and peak at 0. The
    /// switch happens with every stripe locked, so a stripe call counts entirely before or entirely after it; then the
    /// shadow words of other generations are zeroed (a compare-exchange each, so that a word its owner has just written
    /// for the new epoch stays).
    /// </summary>
    public void Clear()
    {
        lock (_clearLock)
        {
            foreach (Stripe stripe in _stripes)
            {
                stripe.Enter();
            }

            TraceEpoch epoch = new(Present | ((ulong)(_nextGeneration() & 127) << 56));
            try
            {
                _epoch = epoch;
                foreach (Stripe stripe in _stripes)
                {
                    Array.Clear(stripe.Slots);
                    stripe.Count = 0;
                }

                Array.Clear(_buckets);
                Array.Clear(_occupied);
                Interlocked.And(ref _freeWork, ~StripeTraceMask);
            }
            finally
            {
                foreach (Stripe stripe in _stripes)
                {
                    stripe.Exit();
                }
            }

            ScanShadow((_, word, code) =>
            {
                if (!IsOf(epoch, code))
                {
                    Interlocked.CompareExchange(ref *(ulong*)word, 0, code);
                }
            });
        }
    }

    /// <summary>Sets the peak to the current size (tracemalloc's <c>reset_peak</c>).</summary>
    public void ResetPeak()
    {
        TraceEpoch epoch = _epoch;
        Interlocked.Exchange(ref epoch.Peak, CurrentOf(epoch));
    }

    /// <summary>
    /// Adds <paramref name="delta"/> traced bytes for <paramref name="epoch"/> to the calling thread's pending count,
    /// raising the epoch's peak when this thread's estimate passes it, and publishing once the count is large.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Account(ThreadShard shard, TraceEpoch epoch, long delta)
    {
        if (!ReferenceEquals(shard.TraceEpoch, epoch))
        {
            shard.AdoptTraceEpoch(epoch);
        }

        AccountInEpoch(shard, epoch, delta);
    }

    /// <summary><see cref="AccountInEpoch"/> of −<paramref name="size"/>: a removal cannot raise the peak, and can
    /// cross only the lower publish bound (|pending| stays below the threshold between calls).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccountRemovedInEpoch(ThreadShard shard, long size)
    {
        long pending = shard.TracePending -= size;
        if (pending < -PublishThreshold)
        {
            shard.PublishTracePending();
        }
    }

    /// <summary><see cref="Account"/> for a shard whose pending bytes already count for <paramref name="epoch"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void AccountInEpoch(ThreadShard shard, TraceEpoch epoch, long delta)
    {
        long pending = shard.TracePending += delta;
        if (delta > 0)
        {
            long estimate = Volatile.Read(ref epoch.Published) + pending;
            if (estimate > Volatile.Read(ref epoch.Peak))
            {
                Accounting.AtomicMax.Raise(ref epoch.Peak, estimate);
            }
        }

        if ((ulong)(pending + PublishThreshold) >= 2 * PublishThreshold) // |pending| >= threshold
        {
            shard.PublishTracePending();
        }
    }
}
