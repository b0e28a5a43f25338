using System.Runtime.CompilerServices;

namespace Runtime.Memory.Accounting;

/// <summary>
/// Per-domain accounting of one runtime instance: live blocks and bytes, peak bytes and totals, kept in per-thread
/// shards so that no shared cache line is written per allocation (design decision 9).
/// </summary>
/// <remarks>
/// <para><b>Cost model.</b> Finding the shard is one thread-static load and one compare (the last shard this thread
/// used); updating it is a handful of plain adds to memory only this thread writes. Shared state is touched only
/// to read the published live bytes and the peak (both rarely written, so they stay in every core's cache), when
/// the peak rises, and once per <see cref="PublishThreshold"/> bytes of net change.</para>
/// <para><b>Exactness.</b> Live blocks, live bytes and the totals are sums of per-thread counters that only grow,
/// so they are exact once the threads that allocate are quiescent, even when blocks are freed on other threads.
/// A read taken while other threads allocate sees each counter at some recent moment.</para>
/// <para><b>Peak.</b> On each growth the allocating thread compares <c>published + its own pending delta</c> with the
/// peak. While one thread is the only one that has used the domain, that estimate is the exact live size, so the
/// peak is exact. Every other thread that has allocated or freed in the domain may hold up to
/// <see cref="PublishThreshold"/> bytes of unpublished change (until it publishes, or has ended and is folded in),
/// so with T threads the peak is within <c>(T − 1) × PublishThreshold</c> bytes of the true high-water mark.
/// A read reports at least the live size it summed, without storing it, so reading never skews the peak.</para>
/// <para><b>Threads that end</b> leave their shard behind; the next read or the next thread to register folds it into
/// <see cref="_retired"/>, so nothing is lost and the shard list does not grow without bound.</para>
/// </remarks>
internal sealed class MemoryAccounting
{
    /// <summary>
    /// Net live-byte change a thread accumulates before publishing it with one Interlocked add.
    /// 64 KiB: about a thousand small allocations between shared writes, and a small error bound on the peak.
    /// </summary>
    internal const long PublishThreshold = 64 * 1024;

    /// <summary>The last shard this thread used, of whichever accounting instance: the one-load fast path.</summary>
    [ThreadStatic]
    private static ThreadShard? t_lastShard;

    /// <summary>This instance's shard per thread, consulted when <see cref="t_lastShard"/> belongs to another instance.</summary>
    private readonly ThreadLocal<ThreadShard?> _shardOfThread = new();

    /// <summary>Every live thread's shard, for summing. Guarded by <see cref="_lock"/>.</summary>
    private readonly List<ThreadShard> _shards = [];

    /// <summary>Counters of threads that have ended. Guarded by <see cref="_lock"/>.</summary>
    private DomainCountersByKind _retired;

    private PeakTrackerByKind _peaks;

    private readonly Lock _lock = new();

    // ---- hot path -------------------------------------------------------------------------------------------

    /// <summary>This thread's shard of this accounting: one thread-static load and a compare.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ThreadShard CurrentShard()
    {
        ThreadShard? shard = t_lastShard;
        return shard is not null && shard.Owner == this ? shard : ShardOfCurrentThreadSlow();
    }

    /// <summary>This thread's counters for <paramref name="domain"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref DomainCounters CountersOf(int domain) => ref CurrentShard().Counters[domain];

    /// <summary>Records a new block, on a shard the caller already holds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnAllocated(ThreadShard shard, int domain, nuint size)
    {
        ref DomainCounters c = ref shard.Counters[domain];
        c.Allocations++;
        c.BytesAllocated += (long)size;
        Grow(domain, ref c, (long)size);
    }

    /// <summary>Records a freed block, on a shard the caller already holds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnFreed(ThreadShard shard, int domain, nuint size)
    {
        ref DomainCounters c = ref shard.Counters[domain];
        c.Frees++;
        c.BytesFreed += (long)size;
        Shrink(domain, ref c, (long)size);
    }

    /// <summary>Records a new block of <paramref name="size"/> accounted bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnAllocated(int domain, nuint size) => OnAllocated(CurrentShard(), domain, size);

    /// <summary>Records a freed block of <paramref name="size"/> accounted bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnFreed(int domain, nuint size) => OnFreed(CurrentShard(), domain, size);

    /// <summary>Records a block resized from <paramref name="oldSize"/> to <paramref name="newSize"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnReallocated(int domain, nuint oldSize, nuint newSize) => OnReallocated(CurrentShard(), domain, oldSize, newSize);

    /// <summary>Records a resized block, on a shard the caller already holds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnReallocated(ThreadShard shard, int domain, nuint oldSize, nuint newSize)
    {
        ref DomainCounters c = ref shard.Counters[domain];
        c.Reallocations++;
        if (newSize >= oldSize)
        {
            long growth = (long)(newSize - oldSize);
            c.BytesAllocated += growth;
            Grow(domain, ref c, growth);
        }
        else
        {
            long shrinkage = (long)(oldSize - newSize);
            c.BytesFreed += shrinkage;
            Shrink(domain, ref c, shrinkage);
        }
    }

    /// <summary>Records a request that returned null. Cold: kept out of line.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void OnFailed(int domain) => CountersOf(domain).Failures++;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Grow(int domain, ref DomainCounters c, long bytes)
    {
        long pending = c.PendingLive += bytes;
        ref PeakTracker tracker = ref _peaks[domain];
        long estimate = Volatile.Read(ref tracker.Published) + pending;
        if (estimate > Volatile.Read(ref tracker.Peak))
        {
            RaisePeak(ref tracker, estimate);
        }

        if (pending >= PublishThreshold)
        {
            Publish(ref tracker, ref c);
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Shrink(int domain, ref DomainCounters c, long bytes)
    {
        long pending = c.PendingLive -= bytes;
        if (pending <= -PublishThreshold)
        {
            Publish(ref _peaks[domain], ref c);
        }
    }

    // ---- slow paths -----------------------------------------------------------------------------------------

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void RaisePeak(ref PeakTracker tracker, long estimate) => AtomicMax.Raise(ref tracker.Peak, estimate);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Publish(ref PeakTracker tracker, ref DomainCounters c)
    {
        Interlocked.Add(ref tracker.Published, c.PendingLive);
        c.PendingLive = 0;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private ThreadShard ShardOfCurrentThreadSlow()
    {
        ThreadShard? shard = _shardOfThread.Value;
        if (shard is null)
        {
            shard = new ThreadShard(this, Thread.CurrentThread);
            lock (_lock)
            {
                FoldEndedThreadsUnsynchronized();
                _shards.Add(shard);
            }

            _shardOfThread.Value = shard;
        }

        t_lastShard = shard;
        return shard;
    }

    /// <summary>Moves the counters of ended threads into <see cref="_retired"/>. Caller holds <see cref="_lock"/>.</summary>
    private void FoldEndedThreadsUnsynchronized()
    {
        for (int i = _shards.Count - 1; i >= 0; i--)
        {
            ThreadShard shard = _shards[i];
            if (shard.Thread.IsAlive)
            {
                continue;
            }

            shard.PublishTracePending(); // read by other threads only when the thread has ended
            for (int d = 0; d < MemoryDomainKindExtensions.Count; d++)
            {
                ref DomainCounters c = ref shard.Counters[d];
                Interlocked.Add(ref _peaks[d].Published, c.PendingLive);
                c.PendingLive = 0;
                _retired[d].Add(c);
            }

            _shards.RemoveAt(i);
        }
    }

    // ---- reading --------------------------------------------------------------------------------------------

    /// <summary>
    /// Sums every thread's counters for <paramref name="domain"/> and returns them with the domain's peak live bytes.
    /// Exact when no thread is allocating in the domain.
    /// </summary>
    public DomainCounters Read(int domain, out long peakBytes)
    {
        DomainCounters sum;
        lock (_lock)
        {
            FoldEndedThreadsUnsynchronized();
            sum = _retired[domain];
            foreach (ThreadShard shard in _shards)
            {
                sum.Add(shard.Counters[domain]);
            }
        }

        // The peak reported is never below this read's live size, but that size is not stored: read while other
        // threads allocate, the sum is of counters from slightly different moments and could overstate the peak.
        peakBytes = Math.Max(Volatile.Read(ref _peaks[domain].Peak), sum.BytesAllocated - sum.BytesFreed);
        return sum;
    }

    /// <summary>
    /// The traced bytes every live thread holds unpublished for <paramref name="epoch"/> (threads that have ended are
    /// folded into it first). Each shard is read at some recent moment, so the sum is exact when no thread is tracing.
    /// </summary>
    public long SumTracePending(Tracing.TraceEpoch epoch)
    {
        long sum = 0;
        lock (_lock)
        {
            FoldEndedThreadsUnsynchronized();
            foreach (ThreadShard shard in _shards)
            {
                if (ReferenceEquals(shard.TraceEpoch, epoch)) // the epoch first: it is set after the count is reset
                {
                    sum += Volatile.Read(ref shard.TracePending);
                }
            }
        }

        return sum;
    }
}
