using System.Runtime.CompilerServices;
using Runtime.Memory.Diagnostics;

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
/// <para><b>Budgets.</b> The growth check compares the estimate with one value, the gate (<see cref="PeakTracker"/>):
/// <c>min(peak, budget)</c>. So a budget costs the fast path nothing; only growth above the peak or the budget takes
/// the slow path, which sums the live bytes exactly (under the shard lock) before it refuses. A refused allocation is
/// not counted; the domain frees the block and returns null. A budget is exact while one thread allocates; with T
/// threads allocating at once the live total can pass it by at most the other threads' unpublished growth,
/// <c>(T − 1) × PublishThreshold</c>, the same bound as the peak's. A resize is checked before it is made
/// (<see cref="Admits"/>), because a refused realloc must leave the old block as it was.</para>
/// <para><b>Episodes.</b> A refusal opens an episode and lowers the gate to <see cref="long.MinValue"/>, so the next
/// growth takes the slow path once, and closes it if the budget admits it. An episode is logged once, when it opens
/// (<see cref="BudgetLog"/> also limits that to one event per second per budget).</para>
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

    public MemoryAccounting()
    {
        for (int d = 0; d < MemoryDomainKindExtensions.Count; d++)
        {
            _peaks[d].Limit = Budget.None; // no budget; the gate starts at the peak, 0
        }
    }

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

    /// <summary>
    /// Records a new block, on a shard the caller already holds; false when the domain's budget refuses it, in which case
    /// nothing is counted and the caller frees the block and returns null (<see cref="OnRefused"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool OnAllocated(ThreadShard shard, int domain, nuint size)
    {
        ref DomainCounters c = ref shard.Counters[domain];
        if (!Grow(domain, ref c, (long)size, refusable: true))
        {
            return false;
        }

        c.Allocations++;
        c.BytesAllocated += (long)size;
        return true;
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

    /// <summary>Records a new block of <paramref name="size"/> accounted bytes; false when the budget refuses it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool OnAllocated(int domain, nuint size) => OnAllocated(CurrentShard(), domain, size);

    /// <summary>Records a freed block of <paramref name="size"/> accounted bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnFreed(int domain, nuint size) => OnFreed(CurrentShard(), domain, size);

    /// <summary>Records a block resized from <paramref name="oldSize"/> to <paramref name="newSize"/> bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnReallocated(int domain, nuint oldSize, nuint newSize) => OnReallocated(CurrentShard(), domain, oldSize, newSize);

    /// <summary>
    /// Records a resized block, on a shard the caller already holds. Never refused: a resize is checked against the
    /// budget before it is made (<see cref="Admits"/>), because after it the old block may be gone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnReallocated(ThreadShard shard, int domain, nuint oldSize, nuint newSize)
    {
        ref DomainCounters c = ref shard.Counters[domain];
        c.Reallocations++;
        if (newSize >= oldSize)
        {
            long growth = (long)(newSize - oldSize);
            c.BytesAllocated += growth;
            Grow(domain, ref c, growth, refusable: false);
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

    /// <summary>Records a request the budget refused (a failure of reason <c>limit</c>). Cold.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void OnRefused(int domain)
    {
        ref DomainCounters c = ref CountersOf(domain);
        c.Failures++;
        c.LimitRefusals++;
    }

    /// <summary>
    /// Adds <paramref name="bytes"/> to this thread's pending live bytes and, when the estimate passes the gate, takes
    /// the slow path (<see cref="PassGate"/>): one load and one compare more than the counters themselves, whether or
    /// not a budget is set.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Grow(int domain, ref DomainCounters c, long bytes, bool refusable)
    {
        long pending = c.PendingLive += bytes;
        ref PeakTracker tracker = ref _peaks[domain];
        long estimate = Volatile.Read(ref tracker.Published) + pending;
        if (estimate > Volatile.Read(ref tracker.Gate) && !PassGate(domain, ref c, estimate, bytes, refusable))
        {
            return false;
        }

        if (pending >= PublishThreshold)
        {
            Publish(ref tracker, ref c);
        }

        return true;
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

    /// <summary>
    /// Growth past the gate: a new peak, a budget to check, or an open refusal episode to close. When the estimate is
    /// over the budget the live bytes are summed exactly (other threads' unpublished frees may make room); if they are
    /// still over, the growth is undone and refused (false) and an episode opens.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool PassGate(int domain, ref DomainCounters c, long estimate, long bytes, bool refusable)
    {
        ref PeakTracker tracker = ref _peaks[domain];
        long limit = Volatile.Read(ref tracker.Limit);
        if (estimate > limit)
        {
            long exact = ExactLiveBytes(domain);
            if (exact > limit && refusable)
            {
                c.PendingLive -= bytes;
                OpenEpisode(domain, exact - bytes, bytes, limit);
                return false;
            }

            estimate = Math.Min(estimate, exact);
        }

        AtomicMax.Raise(ref tracker.Peak, estimate);
        if (Volatile.Read(ref tracker.EpisodeOpen) != 0)
        {
            Interlocked.Exchange(ref tracker.EpisodeOpen, 0);
        }

        RefreshGate(ref tracker);
        return true;
    }

    /// <summary>
    /// Rewrites <see cref="PeakTracker.Gate"/> until it equals what the peak, the budget and the episode flag say, as
    /// read after the last write: every writer of those three calls this afterwards, so the last one leaves the gate
    /// right. A gate that is briefly too low only sends growth to the slow path.
    /// </summary>
    private static void RefreshGate(ref PeakTracker tracker)
    {
        while (true)
        {
            long gate = Volatile.Read(ref tracker.Gate);
            long want = Volatile.Read(ref tracker.EpisodeOpen) != 0
                ? long.MinValue // the next growth takes the slow path, which closes the episode
                : Math.Min(Volatile.Read(ref tracker.Peak), Volatile.Read(ref tracker.Limit));
            if (gate == want)
            {
                return;
            }

            Interlocked.CompareExchange(ref tracker.Gate, want, gate);
        }
    }

    /// <summary>Starts a refusal episode unless one is open, and logs it (rate-limited by <see cref="BudgetLog"/>).</summary>
    private void OpenEpisode(int domain, long liveBytes, long request, long limit)
    {
        ref PeakTracker tracker = ref _peaks[domain];
        if (Interlocked.Exchange(ref tracker.EpisodeOpen, 1) == 0)
        {
            _budgetLogs[domain]?.EpisodeStarted(liveBytes, request, limit);
        }

        RefreshGate(ref tracker);
    }

    /// <summary>
    /// The domain's live bytes now, summed over every thread's unpublished change (ended threads folded in first):
    /// exact when no other thread is allocating. Takes the shard lock: only budget checks near the limit call it.
    /// </summary>
    private long ExactLiveBytes(int domain)
    {
        lock (_lock)
        {
            FoldEndedThreadsUnsynchronized();
            long live = Volatile.Read(ref _peaks[domain].Published);
            foreach (ThreadShard shard in _shards)
            {
                live += Volatile.Read(ref shard.Counters[domain].PendingLive);
            }

            return live;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Publish(ref PeakTracker tracker, ref DomainCounters c)
    {
        Interlocked.Add(ref tracker.Published, c.PendingLive);
        c.PendingLive = 0;
    }

    // ---- budgets --------------------------------------------------------------------------------------------

    private readonly BudgetLog?[] _budgetLogs = new BudgetLog?[MemoryDomainKindExtensions.Count];

    /// <summary>The budget of <paramref name="domain"/> in live bytes; <see cref="Budget.None"/> for none.</summary>
    public long LimitOf(int domain) => Volatile.Read(ref _peaks[domain].Limit);

    /// <summary>Whether <paramref name="domain"/> has a budget (realloc checks it before resizing only then).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsLimited(int domain) => Volatile.Read(ref _peaks[domain].Limit) != Budget.None;

    /// <summary>
    /// Sets the budget of <paramref name="domain"/> (<see cref="Budget.None"/>: none). Takes effect for the next
    /// growth on every thread; blocks already live are not touched, so a budget below the live size refuses all
    /// growth until enough is freed.
    /// </summary>
    public void SetLimit(int domain, long limit)
    {
        ref PeakTracker tracker = ref _peaks[domain];
        Volatile.Write(ref tracker.Limit, limit);
        RefreshGate(ref tracker);
    }

    /// <summary>Where each domain's refusal episodes are logged (null: not logged, only counted).</summary>
    public void SetBudgetLog(int domain, BudgetLog? log) => _budgetLogs[domain] = log;

    /// <summary>
    /// Whether the budget admits <paramref name="growth"/> more live bytes in <paramref name="domain"/> now: the
    /// estimate first, the exact sum when the estimate is over. No side effect; see <see cref="RefuseGrowth"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool Admits(int domain, long growth)
    {
        ref PeakTracker tracker = ref _peaks[domain];
        long limit = Volatile.Read(ref tracker.Limit);
        long estimate = Volatile.Read(ref tracker.Published) + CountersOf(domain).PendingLive;
        return estimate + growth <= limit || ExactLiveBytes(domain) + growth <= limit;
    }

    /// <summary>Opens (or continues) a refusal episode for a growth <see cref="Admits"/> refused.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void RefuseGrowth(int domain, long growth) =>
        OpenEpisode(domain, ExactLiveBytes(domain), growth, Volatile.Read(ref _peaks[domain].Limit));

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
    /// Waits until no thread but the caller is inside a front-door call of this runtime's domains (after the domains
    /// were closed and a process-wide barrier made every thread's count visible). False when the caller itself is inside
    /// one (Dispose from an allocator or hook) or when <paramref name="timeout"/> passes first: then nothing may be
    /// released. A thread that is not in a call is never waited for; one that ended is not in a call.
    /// </summary>
    public bool WaitForCallsToDrain(TimeSpan timeout)
    {
        ThreadShard? mine = _shardOfThread.Value;
        if (mine is not null && Volatile.Read(ref mine.InCall) != 0)
        {
            return false;
        }

        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        var spin = new SpinWait();
        while (true)
        {
            bool busy = false;
            lock (_lock)
            {
                foreach (ThreadShard shard in _shards)
                {
                    if (shard != mine && shard.Thread.IsAlive && Volatile.Read(ref shard.InCall) != 0)
                    {
                        busy = true;
                        break;
                    }
                }
            }

            if (!busy)
            {
                return true;
            }

            if (Environment.TickCount64 > deadline)
            {
                return false;
            }

            spin.SpinOnce();
        }
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
