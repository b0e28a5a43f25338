using Runtime.Memory.Tracing;
using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;
using Runtime.Memory.SmallObject;

namespace Runtime.Memory;

/// <summary>
/// One allocator domain (<c>raw</c>, <c>mem</c> or <c>obj</c>): the front door with PEP 445's exact
/// malloc / calloc / realloc / free semantics, the chain of hooks over a base allocator, and the domain's accounting.
/// </summary>
/// <remarks>
/// <para><b>Guarantees</b>, on every domain and whatever allocator is installed (allocators honour
/// <see cref="MemoryAllocator"/>'s contract; the checks below are made here, before the allocator is called):</para>
/// <list type="bullet">
/// <item>A size above <see cref="MaxRequestSize"/> (<c>nint.MaxValue</c>), or a calloc whose <c>count × size</c>
/// overflows or exceeds it, returns <see langword="null"/> without calling the allocator.</item>
/// <item>Size 0 (and calloc with a zero count or size) returns a distinct non-null block, as if 1 byte had been asked for.</item>
/// <item><c>Realloc(null, n)</c> is <c>Malloc(n)</c>; <c>Realloc(p, 0)</c> resizes and returns non-null; a failed realloc
/// returns <see langword="null"/> and leaves <c>p</c> valid.</item>
/// <item><c>Free(null)</c> does nothing.</item>
/// <item>Every block is <see cref="Alignment"/>-byte aligned. Failure is a <see langword="null"/> return, never an exception.</item>
/// </list>
/// <para>A block must be freed through the domain that allocated it (PEP 445's domain rule).</para>
/// <para><b>Hot path.</b> One size compare, one volatile load of the top allocator, a type check that calls the
/// built-in allocator directly (no virtual dispatch) or the contract otherwise, and the accounting update
/// described on <see cref="MemoryAccounting"/>: no lock, no managed allocation. Calls through the contract run
/// behind an exception barrier: an allocator that throws gets a null return (see <see cref="LastFault"/>). The one
/// exception that passes is <see cref="MemoryViolationException"/>, which the debug hooks throw on purpose under
/// <see cref="ViolationAction.Throw"/> (never into native code: see <see cref="NativeCallScope"/>).</para>
/// </remarks>
public sealed unsafe partial class MemoryDomain
{
    /// <summary>Largest size any domain accepts: <c>nint.MaxValue</c> (CPython's <c>PY_SSIZE_T_MAX</c>).</summary>
    public static readonly nuint MaxRequestSize = (nuint)nint.MaxValue;

    /// <summary>Alignment of every block, in bytes, with or without hooks.</summary>
    public const nuint Alignment = 16;

    private readonly MemoryAccounting _accounting;

    /// <summary>The runtime's debug state, which this domain's debug hook reports to.</summary>
    private readonly MemoryDebugger _debugger;

    /// <summary>Index of this domain in the accounting (its <see cref="MemoryDomainKind"/> value).</summary>
    private readonly int _index;

    /// <summary>The allocator calls go to: a hook, or the base allocator when no hook is installed.</summary>
    private volatile MemoryAllocator _top;

    internal MemoryDomain(MemoryDomainKind kind, MemoryAllocator baseAllocator, MemoryAccounting accounting, MemoryDebugger debugger)
    {
        ArgumentNullException.ThrowIfNull(baseAllocator);
        Kind = kind;
        _debugger = debugger;
        _index = (int)kind;
        _accounting = accounting;
        _top = baseAllocator;
        _base = baseAllocator;
        AdoptInitialChain(baseAllocator);
    }

    /// <summary>Which domain this is.</summary>
    public MemoryDomainKind Kind { get; }

    /// <summary><c>raw</c>, <c>mem</c> or <c>obj</c>.</summary>
    public string Name => Kind.ToName();

    // ---- the front door (hot path) --------------------------------------------------------------------------
    //
    // Each method checks the request, then calls the built-in allocator directly when it is on top (a type check,
    // no virtual dispatch), or the allocator contract out of line otherwise. Bytes are accounted as the allocator
    // sizes its blocks (MemoryAllocator.BlockSize), so what is added on allocation is exactly what is removed on free.

    /// <summary>Allocates <paramref name="size"/> uninitialised bytes (PyMem_Malloc). Null on failure.</summary>
    /// <remarks>
    /// Cost on the small-object allocator: the size compare, the load of <c>_top</c> and its type check, the
    /// allocator's fast path (thread-static heap, pop a free list), and the accounting update (thread-static shard,
    /// four adds, a compare with the published peak): no lock, no atomic, no native call, no managed allocation.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void* Malloc(nuint size)
    {
        if (size > MaxRequestSize)
        {
            return Rejected();
        }

        MemoryAllocator top = _top;
        if (top is SmallObjectAllocator small)
        {
            ThreadShard shard = _accounting.CurrentShard();
            void* block = small.MallocFrom(HeapFor(shard, small), size);
            if (block == null)
            {
                return Rejected();
            }

            return _accounting.OnAllocated(shard, _index, SmallObjectAllocator.AccountedSize(size)) ? block : RefusedByLimit(small, block);
        }

        if (top is SystemAllocator system)
        {
            void* p = system.Malloc(size);
            if (p == null)
            {
                return Rejected();
            }

            return _accounting.OnAllocated(_index, size) ? p : RefusedByLimit(system, p);
        }

        if (top is TracingHook { Inner: SmallObjectAllocator tracedSmall } traced)
        {
            return traced.Sampling ? MallocSampled(traced, tracedSmall, size) : MallocTraced(traced, tracedSmall, size);
        }

        return MallocThroughContract(top, size);
    }

    // ---- tracing over the small-object allocator: the built-in hook on the built-in allocator, without the contract --
    //
    // The tracer's hook directly above the small-object allocator is run here as the domain's own fast path runs that
    // allocator (one shard lookup for the heap and the accounting) plus the tracer's record or untrack, instead of
    // through three virtual calls and the contract's barrier. Any other chain takes the contract path. Untraced
    // domains never get here: these checks come after the built-in allocators' own.
    //
    // Sampling: inlined into Malloc and Free, so that a call that is not sampled costs the untraced path plus a type
    // check, a subtraction and a compare, and a free while no sample is live one load more (measured: untraced pair16
    // unchanged, sampled 1.49x -> 1.21-1.37x); while samples are live, a free of a block whose address bucket holds no
    // trace (nearly every block: 4,096 buckets, a sample per 512 KiB) costs a hash and one load more, not the traced path. Exact tracing: one out-of-line call each way holding the allocator's
    // fast path and the trace's, so that the caller's loop stays as small as the untraced one and the traced work is
    // register-allocated as one piece (exact pair16 in the tracing loop: 37.8 -> 34.3-34.9 ns).

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void* MallocSampled(TracingHook traced, SmallObjectAllocator small, nuint size)
    {
        ThreadShard shard = _accounting.CurrentShard();
        void* block = small.MallocFrom(HeapFor(shard, small), size);
        if (block == null)
        {
            return Rejected();
        }

        if (!_accounting.OnAllocated(shard, _index, SmallObjectAllocator.AccountedSize(size)))
        {
            return RefusedByLimit(small, block); // not traced yet
        }

        traced.Sampled(shard, small, block, size);
        return block;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* MallocTraced(TracingHook traced, SmallObjectAllocator small, nuint size)
    {
        ThreadShard shard = _accounting.CurrentShard();
        void* block = small.MallocFrom(HeapFor(shard, small), size);
        if (block == null)
        {
            return Rejected();
        }

        if (!_accounting.OnAllocated(shard, _index, SmallObjectAllocator.AccountedSize(size)))
        {
            return RefusedByLimit(small, block); // not traced yet
        }

        traced.Traced(shard, small, block, size);
        return block;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FreeTraced(TracingHook traced, SmallObjectAllocator small, void* ptr, int freeWork)
    {
        ThreadShard shard = _accounting.CurrentShard();
        int poolClass = small.PoolClassIfInPool(ptr); // one ownership lookup for the trace's key and the free
        traced.Untraced(shard, ptr, poolClass, freeWork); // before the free: the address must not be reused and traced elsewhere while we hold it
        FreeSmall(shard, small, ptr, poolClass >= 0);
    }

    /// <summary>Allocates <paramref name="count"/> × <paramref name="size"/> zeroed bytes (PyMem_Calloc). Null on failure or overflow.</summary>
    public void* Calloc(nuint count, nuint size)
    {
        if (!SizeMath.TryMultiply(count, size, out nuint total) || total > MaxRequestSize)
        {
            return Rejected();
        }

        MemoryAllocator top = _top;
        void* p;
        try
        {
            p = top.CallocCounted(count, size, out nuint blockSize);
            if (p != null && !_accounting.OnAllocated(_index, blockSize))
            {
                return RefusedByLimit(top, p);
            }
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            return Faulted(top, ex);
        }

        return p == null ? Rejected() : p;
    }

    /// <summary>
    /// Resizes <paramref name="ptr"/> to <paramref name="newSize"/> bytes (PyMem_Realloc). <c>Realloc(null, n)</c> is
    /// <c>Malloc(n)</c>. On failure returns null and <paramref name="ptr"/> stays valid and unchanged.
    /// </summary>
    public void* Realloc(void* ptr, nuint newSize)
    {
        if (ptr == null)
        {
            return Malloc(newSize);
        }

        if (newSize > MaxRequestSize)
        {
            return Rejected();
        }

        MemoryAllocator top = _top;
        long reserved = 0; // with a budget: the growth, reserved before the resize (BudgetReservesResize)
        if (_accounting.IsLimited(_index) && !BudgetReservesResize(top, ptr, newSize, out reserved))
        {
            _accounting.OnRefused(_index);
            return null;
        }

        if (top is SmallObjectAllocator small)
        {
            ThreadShard shard = _accounting.CurrentShard();
            void* moved = small.ReallocFrom(HeapFor(shard, small), ptr, newSize, out nuint before, out nuint after);
            if (moved == null)
            {
                _accounting.Unreserve(_index, reserved);
                return Rejected();
            }

            _accounting.OnReallocated(shard, _index, before, after, reserved);
            return moved;
        }

        void* p;
        try
        {
            p = top.ReallocCounted(ptr, newSize, out nuint oldSize, out nuint blockSize);
            if (p != null)
            {
                _accounting.OnReallocated(_index, oldSize, blockSize, reserved);
            }
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            _accounting.Unreserve(_index, reserved);
            return Faulted(top, ex);
        }

        if (p == null)
        {
            _accounting.Unreserve(_index, reserved);
            return Rejected();
        }

        return p;
    }

    /// <summary>Releases a block allocated by this domain (PyMem_Free). Null does nothing.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Free(void* ptr)
    {
        if (ptr == null)
        {
            return;
        }

        MemoryAllocator top = _top;
        if (top is SmallObjectAllocator small)
        {
            FreeSmall(_accounting.CurrentShard(), small, ptr, small.InPool(ptr));
            return;
        }

        if (top is SystemAllocator system)
        {
            nuint size = system.BlockSize(ptr);
            system.Free(ptr);
            _accounting.OnFreed(_index, size);
            return;
        }

        if (top is TracingHook { Inner: SmallObjectAllocator tracedSmall } traced)
        {
            int work = traced.FreeWork;
            if (work != 0 && (!TraceTable.IsStripesOnly(work) || traced.MayHoldTrace(ptr)))
            {
                FreeTraced(traced, tracedSmall, ptr, work);
            }
            else
            {
                // Sampling, and no sample live, or none that can be this block (its bucket is empty).
                FreeSmall(_accounting.CurrentShard(), tracedSmall, ptr, tracedSmall.InPool(ptr));
            }

            return;
        }

        FreeThroughContract(top, ptr);
    }

    /// <summary>
    /// The last exception an allocator or hook threw into this domain, which the domain turned into a null return
    /// (allocations) or swallowed (free), as the contract requires; <see langword="null"/> when none has.
    /// Such a fault is also counted in <see cref="DomainStatistics.Failures"/>.
    /// </summary>
    public Exception? LastFault => _lastFault;

    private volatile Exception? _lastFault;

    /// <summary>Malloc through the allocator contract: user allocators and hooks, behind an exception barrier.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* MallocThroughContract(MemoryAllocator top, nuint size)
    {
        void* p;
        try
        {
            p = top.MallocCounted(size, out nuint blockSize);
            if (p != null && !_accounting.OnAllocated(_index, blockSize))
            {
                return RefusedByLimit(top, p);
            }
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            return Faulted(top, ex);
        }

        return p == null ? Rejected() : p;
    }

    /// <summary>Free through the allocator contract, behind an exception barrier.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FreeThroughContract(MemoryAllocator top, void* ptr)
    {
        try
        {
            if (top.FreeCounted(ptr, out nuint size))
            {
                _accounting.OnFreed(_index, size);
            }
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            Faulted(top, ex);
        }
    }

    /// <summary>
    /// The small-object free of <see cref="Free"/> and of the traced path: this thread's heap from its shard (none is
    /// created for a thread that only frees), the free, and the accounting of the bytes it returns.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FreeSmall(ThreadShard shard, SmallObjectAllocator small, void* ptr, bool pooled)
    {
        if (!pooled)
        {
            _accounting.OnFreed(shard, _index, small.FreeLarge(ptr)); // null, or a large block
            return;
        }

        ref HeapSlot slot = ref shard.Heaps[_index];
        Heap* heap = slot.Allocator == small && slot.Registration is { } registration
            ? registration.Heap
            : BindHeap(ref slot, small, create: false);
        _accounting.OnFreed(shard, _index, small.FreePooled(heap, ptr));
    }

    /// <summary>This thread's heap of <paramref name="small"/>, cached in its shard; created on first use.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Heap* HeapFor(ThreadShard shard, SmallObjectAllocator small)
    {
        ref HeapSlot slot = ref shard.Heaps[_index];
        Heap* heap = slot.Allocator == small && slot.Registration is { } registration ? registration.Heap : null;
        return heap != null ? heap : BindHeap(ref slot, small, create: true);
    }

    /// <summary>
    /// Caches this thread's registration with <paramref name="small"/> in its shard (cold: once per thread and
    /// allocator) and returns its heap; a heap that could not be created is not cached, so the next call retries.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Heap* BindHeap(ref HeapSlot slot, SmallObjectAllocator small, bool create)
    {
        SmallObjectAllocator.ThreadHeap? registration = small.RegistrationOfCurrentThread(create, out Heap* heap);
        slot.Allocator = registration is null ? null : small;
        slot.Registration = registration;
        return heap;
    }

    /// <summary>Counts a null return; the cold tail of every front-door method.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* Rejected()
    {
        _accounting.OnFailed(_index);
        return null;
    }

    /// <summary>
    /// The budget refused a block already allocated (the check comes with the accounting, after the allocator):
    /// frees it through <paramref name="allocator"/>, uncounted as it was, and counts the refusal.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* RefusedByLimit(MemoryAllocator allocator, void* block)
    {
        try
        {
            allocator.Free(block);
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            Faulted(allocator, ex); // counted as a failure too; the refusal below is the reason the caller sees
        }

        _accounting.OnRefused(_index);
        return null;
    }

    /// <summary>
    /// Reserves in the budget what resizing <paramref name="ptr"/> to <paramref name="newSize"/> will add, before the
    /// resize, because a refused realloc must leave the block as it was and two threads must not both be admitted into
    /// the same room (<see cref="MemoryAccounting.TryReserve"/>). First the whole new size the allocator will account
    /// (the size requested, rounded as the small-object allocator rounds it), which needs no lookup: the old block is
    /// given back once the resize is recorded. If that does not fit, the growth alone (new size less the block's size
    /// now); a shrink reserves nothing and is always admitted. <paramref name="reserved"/>: what was reserved.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private bool BudgetReservesResize(MemoryAllocator top, void* ptr, nuint newSize, out long reserved)
    {
        long after = (long)(top is SmallObjectAllocator ? SmallObjectAllocator.AccountedSize(newSize) : newSize);
        if (_accounting.TryReserve(_index, after))
        {
            reserved = after;
            return true;
        }

        reserved = 0;
        long before;
        try
        {
            before = (long)top.BlockSize(ptr);
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            return true; // the realloc itself will fault the same way, and report it
        }

        long growth = after - before;
        if (growth <= 0)
        {
            return true;
        }

        if (_accounting.TryReserve(_index, growth))
        {
            reserved = growth;
            return true;
        }

        _accounting.RefuseGrowth(_index, growth);
        return false;
    }

    /// <summary>Records an exception thrown by an allocator and turns it into a counted failure.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* Faulted(MemoryAllocator allocator, Exception ex)
    {
        _lastFault = new AllocatorFaultException(
            $"Allocator '{allocator.Name}' of the {Name} domain threw {ex.GetType().Name}: {ex.Message}. Allocators must return null instead of throwing; the domain did so for it.",
            ex);
        return Rejected();
    }

    // ---- statistics -----------------------------------------------------------------------------------------

    /// <summary>
    /// This domain's accounting: exact when no thread is allocating in it; see <see cref="DomainStatistics"/>
    /// for how each figure behaves under concurrency.
    /// </summary>
    public DomainStatistics GetStatistics() => GetStatistics(StatisticsParts.All);

    /// <summary>The statistics with only <paramref name="parts"/> filled in (the metrics' callbacks read what they report).</summary>
    internal DomainStatistics GetStatistics(StatisticsParts parts)
    {
        DomainCounters sum = _accounting.Read(_index, out long peakBytes);
        return new DomainStatistics(
            Kind,
            (parts & StatisticsParts.Chains) != 0 ? DescribeChain() : "",
            LiveBlocks: sum.Allocations - sum.Frees,
            LiveBytes: sum.BytesAllocated - sum.BytesFreed,
            PeakBytes: peakBytes,
            sum.Allocations,
            sum.Frees,
            sum.Reallocations,
            sum.Failures,
            sum.BytesAllocated)
        {
            LimitRefusals = sum.LimitRefusals,
            MaxBytes = MaxBytes,
            SmallObjects = (parts & StatisticsParts.SmallObjects) != 0 ? (_base as SmallObjectAllocator)?.GetStatistics() : null,
        };
    }

    /// <summary>Live bytes right now (a convenience over <see cref="GetStatistics()"/>, without its allocator walk).</summary>
    public long LiveBytes
    {
        get
        {
            DomainCounters sum = _accounting.Read(_index, out _);
            return sum.BytesAllocated - sum.BytesFreed;
        }
    }

    /// <summary>Live blocks right now (a convenience over <see cref="GetStatistics()"/>).</summary>
    public long LiveBlocks
    {
        get
        {
            DomainCounters sum = _accounting.Read(_index, out _);
            return sum.Allocations - sum.Frees;
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"{Name} domain ({DescribeChain()})";
}
