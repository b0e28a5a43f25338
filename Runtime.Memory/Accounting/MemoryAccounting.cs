using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Threading;

namespace Runtime.Memory.Accounting;

/// <summary>
/// Per-domain accounting of one runtime instance: live blocks and bytes, peak bytes and totals, kept in per-thread
/// contexts (<see cref="ThreadContext"/>) so that no shared cache line is written per allocation (design decision 9).
/// </summary>
/// <remarks>
/// <para><b>Cost model.</b> Finding the thread's counters is one thread-static load, the entry of the runtime's slot and
/// a compare (<see cref="ThreadContexts.Find"/>; the domains do it once per call for the allocator and the accounting);
/// updating them is a handful of plain adds to memory only this thread writes. Shared state is touched only
/// to read the published live bytes and the peak (both rarely written, so they stay in every core's cache), when
/// the peak rises, and once per <see cref="PublishThreshold"/> bytes of net change.</para>
/// <para><b>Exactness.</b> Live blocks, live bytes and the totals are sums of per-thread counters that only grow,
/// so they are exact once the threads that allocate are quiescent, even when blocks are freed on other threads.
/// A read taken while other threads allocate sees each counter at some recent moment.</para>
/// <para><b>Peak.</b> On each growth the allocating thread compares <c>published + its own pending delta</c> with the
/// peak. While one thread is the only one that has used the domain, that estimate is the exact live size, so the
/// peak is exact. A thread's pending delta always stays below <see cref="PublishThreshold"/>: growth that would bring
/// it to the threshold (any block of 64 KiB or more, or the one that crosses it) is published at once, and the peak
/// is raised from the published total that addition made. Every other thread that has used the domain may hold less
/// than <see cref="PublishThreshold"/> bytes of unpublished change (until it publishes, or has ended and is folded
/// in), so with T threads the peak is within <c>(T − 1) × PublishThreshold</c> bytes of the true high-water mark, for
/// blocks of any size. A read reports at least the live size it summed, without storing it, so reading never skews
/// the peak.</para>
/// <para><b>Threads that end</b> leave their context behind; the next read or the next thread to register folds it into
/// <see cref="_retired"/> and lets go of it (<see cref="ThreadContext.Release"/>), so nothing is lost and the list does
/// not grow without bound. <see cref="ThreadShard"/> is the runtime's managed record of each thread.</para>
/// <para><b>Budgets.</b> Growth that stays pending is checked against one value, the gate (<see cref="PeakTracker"/>):
/// <c>min(peak, budget)</c>. So a budget costs the small-block path nothing; only growth above the peak or the budget
/// takes the slow path, which sums the live bytes exactly (under the accounting lock) before it refuses. Growth that is
/// published is admitted by a compare-exchange that adds it to the published total only if that total stays within
/// the budget, the check and the addition in one step (<see cref="GrowPublished"/>): an atomic per block of 64 KiB or
/// more, which costs far more than that anyway. So no two threads can both be admitted into the same room with
/// bytes neither has published: every admitted growth left <c>published + that thread's pending ≤ budget</c> (or
/// the exact sum within it), and the live total can pass the budget only by the other threads' pending growth, less
/// than <c>(T − 1) × PublishThreshold</c> with T threads, for blocks of any size. Exact while one thread uses the
/// domain. The price of the atomic step: a growth that is published does not count other threads' unpublished frees
/// (each less than <see cref="PublishThreshold"/>), so while other threads hold such frees it can be refused up to
/// that much below the budget. A refused allocation is not counted; the domain frees the block and returns null. A
/// resize reserves its growth before it is made (<see cref="TryReserve"/>), because a refused realloc must leave the
/// old block as it was, and a growth checked before and counted after could be admitted on two threads at once.</para>
/// <para><b>Exact budgets</b> (library tags, <see cref="SetLimit"/> with <c>exact</c>): every growth is published at
/// once (<see cref="PeakTracker.PublishAt"/> = 1), so every admission is the compare-exchange above and the live bytes
/// never pass the budget, whatever the number of threads: an atomic per growth, on that account only. Frees still stay
/// pending until 64 KiB, so such a budget errs on the safe side (it may refuse while other threads hold unpublished
/// frees).</para>
/// <para><b>Accounts.</b> The domains are accounts 0-2; library tags take accounts 3 and up (<see cref="AccountCount"/>),
/// with the same counters in the same per-thread contexts.</para>
/// <para><b>Episodes.</b> A refusal opens an episode and lowers the gate to <see cref="long.MinValue"/>, so the next
/// growth takes the slow path once, and closes it if the budget admits it. An episode is logged once, when it opens
/// (<see cref="BudgetLog"/> also limits that to one event per second per budget).</para>
/// </remarks>
internal sealed unsafe class MemoryAccounting
{
    /// <summary>
    /// Net live-byte change a thread accumulates before publishing it with one atomic add: a thread's pending change
    /// always stays strictly between <c>−PublishThreshold</c> and <c>PublishThreshold</c>. 64 KiB: about a thousand
    /// small allocations between shared writes, and a small error bound on the peak and the budget.
    /// </summary>
    internal const long PublishThreshold = 64 * 1024;

    /// <summary>
    /// Accounts one runtime keeps: the three domains (indices 0-2, <see cref="MemoryDomainKind"/>), then up to
    /// <see cref="MaxTags"/> library tags (<see cref="LibraryAccount"/>). Every account has the same per-thread counters,
    /// peak, gate and budget; a thread's counters of all of them sit in its <see cref="ThreadContext"/>.
    /// </summary>
    internal const int AccountCount = 32;

    /// <summary>Library tags one runtime can account (<see cref="AccountCount"/> less the domains).</summary>
    internal const int MaxTags = AccountCount - MemoryDomainKindExtensions.Count;

    private int _tagAccounts;

    /// <summary>The account index of a new library tag (cold: once per tag); −1 when all <see cref="MaxTags"/> are taken.</summary>
    internal int NewTagAccount()
    {
        int tag = Interlocked.Increment(ref _tagAccounts) - 1;
        return tag < MaxTags ? MemoryDomainKindExtensions.Count + tag : -1;
    }

    /// <summary>This runtime's id: a thread's table entry (<see cref="ThreadContexts"/>) is its context only when it matches.</summary>
    internal readonly long Owner = ThreadContexts.NewOwner();

    /// <summary>This runtime's slot in every thread's table of contexts.</summary>
    internal readonly int Slot = ThreadContexts.TakeSlot();

    /// <summary>Set once the contexts have been let go (<see cref="ReleaseContexts"/>): a thread that registers after that
    /// gets a context the runtime has already let go of, so it frees it itself.</summary>
    private bool _released;

    /// <summary>Every live thread's shard, for summing. Guarded by <see cref="_lock"/>.</summary>
    private readonly List<ThreadShard> _shards = [];

    /// <summary>Counters of threads that have ended. Guarded by <see cref="_lock"/>.</summary>
    private DomainCountersByKind _retired;

    /// <summary>Each account's shared tracker (published bytes, peak, gate, budget), in native memory so that native
    /// fast paths (the Lua route's, native/lua_route.c) read the same trackers; freed with the accounting (finalizer).</summary>
    private readonly PeakTracker* _peaks = (PeakTracker*)NativeMemory.AlignedAlloc((nuint)(AccountCount * sizeof(PeakTracker)), 64);

    /// <summary>The tracker of <paramref name="account"/>, for a native fast path: valid while this accounting lives.</summary>
    internal PeakTracker* TrackerOf(int account) => _peaks + account;

    private readonly Lock _lock = new();

    public MemoryAccounting()
    {
        NativeMemory.Clear(_peaks, (nuint)(AccountCount * sizeof(PeakTracker)));
        for (int d = 0; d < AccountCount; d++)
        {
            _peaks[d].Limit = Budget.None; // no budget; the gate starts at the peak, 0
            _peaks[d].PublishAt = PublishThreshold;
        }
    }

    // ---- hot path -------------------------------------------------------------------------------------------

    /// <summary>This thread's context of this runtime: one thread-static load, the entry of the runtime's slot and a
    /// compare of its id (<see cref="ThreadContexts.Find"/>); created on the thread's first call.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ThreadContext* CurrentContext()
    {
        ThreadContext* context = ThreadContexts.Find(Slot, Owner);
        return context != null ? context : ContextOfCurrentThreadSlow();
    }

    /// <summary>This runtime's managed record of the calling thread (the tracer's per-thread state).</summary>
    public ThreadShard CurrentShard() => ThreadShard.Of(CurrentContext());

    /// <summary>This thread's counters for <paramref name="domain"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ref DomainCounters CountersOf(int domain) => ref CurrentContext()->Accounts[domain];

    /// <summary>
    /// Records a new block, in a context the caller already holds; false when the domain's budget refuses it, in which case
    /// nothing is counted and the caller frees the block and returns null (<see cref="OnRefused"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool OnAllocated(ThreadContext* context, int domain, nuint size) => OnAllocated(ref context->Accounts[domain], domain, size);

    /// <summary>Records a new block in this thread's counters <paramref name="c"/> of <paramref name="domain"/>; false when the budget refuses it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool OnAllocated(ref DomainCounters c, int domain, nuint size)
    {
        if (!Grow(domain, ref c, (long)size, refusable: true))
        {
            return false;
        }

        c.Allocations++;
        c.BytesAllocated += (long)size;
        return true;
    }

    /// <summary>Records a freed block, in a context the caller already holds.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnFreed(ThreadContext* context, int domain, nuint size) => OnFreed(ref context->Accounts[domain], domain, size);

    /// <summary>Records a freed block in this thread's counters <paramref name="c"/> of <paramref name="domain"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnFreed(ref DomainCounters c, int domain, nuint size)
    {
        c.Frees++;
        c.BytesFreed += (long)size;
        Shrink(domain, ref c, (long)size);
    }

    /// <summary>Records a new block of <paramref name="size"/> accounted bytes; false when the budget refuses it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool OnAllocated(int domain, nuint size) => OnAllocated(CurrentContext(), domain, size);

    /// <summary>Records a freed block of <paramref name="size"/> accounted bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnFreed(int domain, nuint size) => OnFreed(CurrentContext(), domain, size);

    /// <summary>
    /// Records a block resized from <paramref name="oldSize"/> to <paramref name="newSize"/> bytes, on a shard the caller
    /// already holds; <paramref name="reserved"/> bytes of it were reserved before the resize (<see cref="TryReserve"/>;
    /// 0: none). Never refused: with a budget, the growth was
    /// reserved before the resize was made (<see cref="TryReserve"/>), because after it the old block may be gone; what
    /// the resize changed beyond the reservation (the old block's size, when the reservation was the new size) is
    /// settled here, and the peak raised once the block is real.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void OnReallocated(ThreadContext* context, int domain, nuint oldSize, nuint newSize, long reserved)
    {
        ref DomainCounters c = ref context->Accounts[domain];
        c.Reallocations++;
        long change;
        if (newSize >= oldSize)
        {
            change = (long)(newSize - oldSize);
            c.BytesAllocated += change;
        }
        else
        {
            change = -(long)(oldSize - newSize);
            c.BytesFreed -= change;
        }

        long unreserved = change - reserved;
        if (unreserved < 0)
        {
            Shrink(domain, ref c, -unreserved);
            if (reserved == 0)
            {
                return;
            }

            unreserved = 0; // the reservation's growth still raises the peak
        }

        Grow(domain, ref c, unreserved, refusable: false);
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
    /// not a budget is set. Growth that would bring the pending bytes to <see cref="PublishThreshold"/> is never left
    /// pending: it is published at once, checked against the budget in the same atomic step (<see cref="GrowPublished"/>),
    /// so every thread's pending bytes stay below the threshold.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Grow(int domain, ref DomainCounters c, long bytes, bool refusable)
    {
        ref PeakTracker tracker = ref _peaks[domain];
        long pending = c.PendingLive + bytes;
        if (pending >= tracker.PublishAt)
        {
            return GrowPublished(domain, ref c, pending, bytes, refusable ? Admission.Checked : Admission.Unchecked);
        }

        c.PendingLive = pending;
        long estimate = Volatile.Read(ref tracker.Published) + pending;
        return estimate <= Volatile.Read(ref tracker.Gate) || PassGate(domain, ref c, estimate, bytes, refusable);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Shrink(int domain, ref DomainCounters c, long bytes)
    {
        long pending = c.PendingLive - bytes;
        if (pending <= -PublishThreshold)
        {
            PublishShrink(ref _peaks[domain], ref c, pending);
            return;
        }

        c.PendingLive = pending;
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

        Admitted(ref tracker, estimate);
        return true;
    }

    /// <summary>Growth past the gate was admitted with <paramref name="estimate"/> live bytes: raises the peak, closes
    /// an open refusal episode, and brings the gate up to date.</summary>
    private static void Admitted(ref PeakTracker tracker, long estimate)
    {
        AtomicMax.Raise(ref tracker.Peak, estimate);
        if (Volatile.Read(ref tracker.EpisodeOpen) != 0)
        {
            Interlocked.Exchange(ref tracker.EpisodeOpen, 0);
        }

        RefreshGate(ref tracker);
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
    /// exact when no other thread is allocating. Takes the accounting lock: only budget checks near the limit call it.
    /// </summary>
    private long ExactLiveBytes(int domain)
    {
        lock (_lock)
        {
            FoldEndedThreadsUnsynchronized();
            long live = Volatile.Read(ref _peaks[domain].Published);
            foreach (ThreadShard shard in _shards)
            {
                live += Volatile.Read(ref shard.Context->Accounts[domain].PendingLive);
            }

            return live;
        }
    }

    /// <summary>How <see cref="GrowPublished"/> admits growth.</summary>
    private enum Admission
    {
        /// <summary>Not refusable (a resize already made): published whatever the budget says.</summary>
        Unchecked,

        /// <summary>A new block: refused (an episode opens) when it would pass the budget; raises the peak.</summary>
        Checked,

        /// <summary>A reservation before a resize (<see cref="TryReserve"/>): refused quietly, the peak left alone.</summary>
        Reserved,
    }

    /// <summary>
    /// Publishes this thread's pending bytes with <paramref name="bytes"/> of growth, <paramref name="pending"/> in all
    /// (at least <see cref="PublishThreshold"/>): with a budget, a compare-exchange that adds them only while the
    /// published total stays within the budget, so that the check and the addition are one step and two threads can
    /// never both pass the check with bytes the other has not published yet. Cold: one atomic per 64 KiB of growth at
    /// least, and only large blocks (or the block that crosses the threshold) come here.
    /// </summary>
    /// <remarks>
    /// Other threads' unpublished frees (each less than <see cref="PublishThreshold"/>) do not make room here: counting
    /// them would let this thread publish past the budget while they allocate the room back on their fast paths, which
    /// compare with the published total only. Threads that have ended are folded in before a refusal.
    /// </remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool GrowPublished(int domain, ref DomainCounters c, long pending, long bytes, Admission admission)
    {
        ref PeakTracker tracker = ref _peaks[domain];
        long limit = admission == Admission.Unchecked ? long.MaxValue : Volatile.Read(ref tracker.Limit);
        long before = c.PendingLive;
        if (before < 0)
        {
            c.PendingLive = 0; // until the total below includes them, a reader sees these frees not yet made: conservative
        }

        if (!AtomicLimit.TryAdd(ref tracker.Published, pending, limit, out long published))
        {
            long live = ExactLiveBytes(domain); // folds ended threads' pending bytes into the published total
            if (!AtomicLimit.TryAdd(ref tracker.Published, pending, limit, out published))
            {
                c.PendingLive = before;
                if (admission == Admission.Checked)
                {
                    OpenEpisode(domain, live, bytes, limit);
                }

                return false;
            }
        }

        c.PendingLive = 0; // a reader meanwhile counted the positive part twice: conservative
        long total = published + pending;
        if (admission != Admission.Reserved && total > Volatile.Read(ref tracker.Gate))
        {
            Admitted(ref tracker, total);
        }

        return true;
    }

    /// <summary>
    /// Publishes this thread's pending change, a net free of at least <see cref="PublishThreshold"/>. The pending
    /// bytes are cleared first, so that a reader summing meanwhile (published, then pending) counts the frees at most
    /// once: it may see them not yet made, never made twice.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void PublishShrink(ref PeakTracker tracker, ref DomainCounters c, long pending)
    {
        c.PendingLive = 0;
        Interlocked.Add(ref tracker.Published, pending);
    }

    // ---- budgets --------------------------------------------------------------------------------------------

    private readonly BudgetLog?[] _budgetLogs = new BudgetLog?[AccountCount];

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
    public void SetLimit(int domain, long limit, bool exact = false)
    {
        ref PeakTracker tracker = ref _peaks[domain];
        Volatile.Write(ref tracker.PublishAt, exact && limit != Budget.None ? 1 : PublishThreshold);
        Volatile.Write(ref tracker.Limit, limit);
        RefreshGate(ref tracker);
    }

    /// <summary>Where each domain's refusal episodes are logged (null: not logged, only counted).</summary>
    public void SetBudgetLog(int domain, BudgetLog? log) => _budgetLogs[domain] = log;

    /// <summary>
    /// Reserves <paramref name="growth"/> more live bytes in <paramref name="domain"/> before a resize that will make
    /// them, if the budget admits them: counted as live at once (so that no other thread can be admitted into the same
    /// room), the peak left alone until the resize is recorded (<see cref="OnReallocated"/>),
    /// or given back with <see cref="Unreserve"/> if it fails. Like an allocation: growth that reaches
    /// <see cref="PublishThreshold"/> is published and checked in one atomic step; smaller growth is checked against
    /// the estimate, then the exact sum. False, with nothing counted and no episode opened, when the budget refuses it
    /// (see <see cref="RefuseGrowth"/>).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public bool TryReserve(int domain, long growth)
    {
        ref DomainCounters c = ref CountersOf(domain);
        long pending = c.PendingLive + growth;
        if (pending >= _peaks[domain].PublishAt)
        {
            return GrowPublished(domain, ref c, pending, growth, Admission.Reserved);
        }

        c.PendingLive = pending; // before the check, as on the allocation path: an exact sum elsewhere sees it
        ref PeakTracker tracker = ref _peaks[domain];
        long limit = Volatile.Read(ref tracker.Limit);
        if (Volatile.Read(ref tracker.Published) + pending > limit && ExactLiveBytes(domain) > limit)
        {
            c.PendingLive -= growth;
            return false;
        }

        return true;
    }

    /// <summary>Gives back bytes <see cref="TryReserve"/> reserved for a resize that then failed.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void Unreserve(int domain, long reserved)
    {
        if (reserved != 0)
        {
            Shrink(domain, ref CountersOf(domain), reserved);
        }
    }

    /// <summary>Opens (or continues) a refusal episode for a growth <see cref="TryReserve"/> refused.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public void RefuseGrowth(int domain, long growth) =>
        OpenEpisode(domain, ExactLiveBytes(domain), growth, Volatile.Read(ref _peaks[domain].Limit));

    /// <summary>
    /// The calling thread's context when its table entry did not match: found in the thread's list (the slot was shared
    /// or reused meanwhile), or created and registered (cold: once per thread and runtime).
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private ThreadContext* ContextOfCurrentThreadSlow()
    {
        ThreadContext* context = ThreadContexts.FindListed(Slot, Owner);
        if (context != null)
        {
            return context;
        }

        try
        {
            context = ThreadContext.Create(Owner, Slot);
            if (context == null || !ThreadContexts.Adopt(context))
            {
                context = null;
            }
        }
        catch (OutOfMemoryException)
        {
            context = null; // NativeMemory reports a refusal by throwing; the front door must not
        }

        if (context == null)
        {
            Environment.FailFast("RuntimeMem: no memory for a thread's context (about 2 KiB); the process cannot go on allocating.");
        }

        var shard = new ThreadShard(Thread.CurrentThread, context);
        context->Shard = GCHandle.ToIntPtr(GCHandle.Alloc(shard, GCHandleType.Weak));
        lock (_lock)
        {
            if (_released)
            {
                ReleaseUnsynchronized(shard); // a call into a disposed runtime: the thread frees it on its next slow path
                return context;
            }

            FoldEndedThreadsUnsynchronized();
            _shards.Add(shard);
        }

        return context;
    }

    /// <summary>The runtime lets go of <paramref name="shard"/>'s context (its counters already folded, or no longer read).</summary>
    private static void ReleaseUnsynchronized(ThreadShard shard)
    {
        GCHandle.FromIntPtr(shard.Context->Shard).Free();
        ThreadContext.Release(shard.Context, ThreadContext.RuntimeParty);
        shard.Context = null;
    }

    /// <summary>
    /// Folds every thread's counters into the retired totals and lets go of every context, then gives the slot back:
    /// the runtime's Dispose, once no call is in flight (or its finalizer). Reads afterwards see the totals; calls into
    /// the closed domains still find their thread's context, which the thread then frees.
    /// </summary>
    public void ReleaseContexts()
    {
        lock (_lock)
        {
            if (_released)
            {
                return;
            }

            _released = true;
            foreach (ThreadShard shard in _shards)
            {
                Retire(shard);
            }

            _shards.Clear();
        }

        ThreadContexts.ReturnSlot(Slot);
    }

    /// <summary>A runtime that was never disposed lets go of its contexts when it is collected; the trackers go then
    /// (statistics read after Dispose still use them).</summary>
    ~MemoryAccounting()
    {
        ReleaseContexts();
        NativeMemory.AlignedFree(_peaks);
    }

    /// <summary>Moves one thread's counters (and traced bytes) into the totals and lets go of its context. Caller holds <see cref="_lock"/>.</summary>
    private void Retire(ThreadShard shard)
    {
        shard.PublishTracePending();
        for (int d = 0; d < AccountCount; d++)
        {
            ref DomainCounters c = ref shard.Context->Accounts[d];
            Interlocked.Add(ref _peaks[d].Published, c.PendingLive);
            c.PendingLive = 0;
            _retired[d].Add(c);
        }

        ReleaseUnsynchronized(shard);
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

            Retire(shard); // its tracer state is read by other threads only now that the thread has ended
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
                sum.Add(shard.Context->Accounts[domain]);
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
        ThreadContext* mine = ThreadContexts.Find(Slot, Owner);
        if (mine == null)
        {
            mine = ThreadContexts.FindListed(Slot, Owner);
        }

        if (mine != null && Volatile.Read(ref mine->InCall) != 0)
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
                    if (shard.Context != mine && shard.Thread.IsAlive && Volatile.Read(ref shard.Context->InCall) != 0)
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
