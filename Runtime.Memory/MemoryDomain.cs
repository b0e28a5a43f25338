using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;
using Runtime.Memory.Threading;

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
/// <para><b>Hot path.</b> One size compare, the thread's context of this runtime (one thread-static load, the entry of
/// the runtime's slot and a compare: <see cref="Threading.ThreadContexts"/>), the call counted in flight in it, one
/// volatile load of the pipeline and one call to it (<see cref="Pipeline.DomainPipeline"/>, built for the chain's shape
/// whenever the chain or the budget changes): no lock, no managed allocation, no type test, and the domain knows no
/// allocator.</para>
/// <para><b>Faults.</b> Calls through the allocator contract (any chain with a hook or a user allocator on it) run
/// behind an exception barrier. An exception raised by the runtime's own code (a built-in allocator or hook) is memory
/// corruption: it is reported (<see cref="MemoryViolationKind.AllocatorFault"/>) and the process stops, unless the debug
/// hooks are installed on the domain with another <see cref="ViolationAction"/>. The fast paths (a built-in allocator
/// alone on the chain) carry no barrier, for cost (what a catch there cost is in <c>docs/BENCHMARKS.md</c>): the allocator checks what it follows instead (the small-object allocator's free-list
/// links, <see cref="MemoryViolationKind.HeapCorruption"/>), and anything else that faults there propagates to the
/// caller as the exception it is. An exception from a user-supplied allocator or hook becomes a null return, recorded in
/// <see cref="LastFault"/> and logged once per allocator (event 4501). <see cref="MemoryViolationException"/>, which the
/// debug hooks throw on purpose under <see cref="ViolationAction.Throw"/>, passes (never into native code: see
/// <see cref="NativeCallScope"/>).</para>
/// <para><b>After the runtime is disposed</b> allocations return null and frees do nothing (see <see cref="RuntimeMemory.Dispose"/>).</para>
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

    /// <summary>What the front door calls: built for <see cref="_top"/>'s chain whenever it changes (MemoryDomain.Chain.cs).</summary>
    private volatile Pipeline.DomainPipeline _pipeline = null!; // built in the constructor

    /// <summary>The runtime's slot and id in every thread's table of contexts (copies of the accounting's).</summary>
    private readonly int _slot;
    private readonly long _owner;

    internal MemoryDomain(MemoryDomainKind kind, MemoryAllocator baseAllocator, MemoryAccounting accounting, MemoryDebugger debugger)
    {
        ArgumentNullException.ThrowIfNull(baseAllocator);
        Kind = kind;
        _debugger = debugger;
        _index = (int)kind;
        _accounting = accounting;
        _slot = accounting.Slot;
        _owner = accounting.Owner;
        _top = baseAllocator;
        _base = baseAllocator;
        AdoptInitialChain(baseAllocator);
        lock (_chainLock)
        {
            RebuildPipelineUnsynchronized();
        }
    }

    /// <summary>Which domain this is.</summary>
    public MemoryDomainKind Kind { get; }

    /// <summary>The pool <c>AsMemoryPool()</c> hands out for this domain, made on first use (Buffers/MemoryDomainBufferExtensions).</summary>
    internal Buffers.RuntimeMemoryPool? SharedMemoryPool;

    /// <summary><c>raw</c>, <c>mem</c> or <c>obj</c>.</summary>
    public string Name => Kind.ToName();

    // ---- the front door (hot path) --------------------------------------------------------------------------
    //
    // Each method checks the request, finds the thread's context (one thread-static load and a compare: see
    // ThreadContexts), counts the call in flight in it, and makes one call: the pipeline built for the chain's shape
    // (Pipeline/DomainPipeline), which does the chain's work and the accounting. The domain decides nothing per call and
    // knows no allocator: each allocator on top of a chain chooses its pipeline. Bytes are accounted as the allocator
    // sizes its blocks, so what is added on allocation is exactly what is removed on free.

    /// <summary>Allocates <paramref name="size"/> uninitialised bytes (PyMem_Malloc). Null on failure.</summary>
    /// <remarks>
    /// Cost on the small-object allocator: the size compare, the thread's context, two stores to its in-flight count, one
    /// load of the pipeline and its call, and the pipeline's work (<see cref="Pipeline.SmallObjectPipeline{TBudget}"/>):
    /// no lock, no atomic, no native call, no managed allocation, no type test.
    /// </remarks>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void* Malloc(nuint size)
    {
        if (size > MaxRequestSize)
        {
            return Rejected();
        }

        ThreadContext* context = Context();
        Enter(context);
        void* p = _pipeline.Malloc(context, size);
        Leave(context);
        return p;
    }

    /// <summary>Allocates <paramref name="count"/> × <paramref name="size"/> zeroed bytes (PyMem_Calloc). Null on failure or overflow.</summary>
    public void* Calloc(nuint count, nuint size)
    {
        if (!SizeMath.TryMultiply(count, size, out nuint total) || total > MaxRequestSize)
        {
            return Rejected();
        }

        ThreadContext* context = Context();
        Enter(context);
        void* p = _pipeline.Calloc(context, count, size);
        Leave(context);
        return p;
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

        ThreadContext* context = Context();
        Enter(context);
        void* p = _pipeline.Realloc(context, ptr, newSize);
        Leave(context);
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

        ThreadContext* context = Context();
        Enter(context);
        _pipeline.Free(context, ptr);
        Leave(context);
    }

    /// <summary>The calling thread's context of this runtime (<see cref="ThreadContexts.Find"/>, with the runtime's slot
    /// and id copied into the domain so that no other object is loaded).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ThreadContext* Context()
    {
        ThreadContext* context = ThreadContexts.Find(_slot, _owner);
        return context != null ? context : _accounting.CurrentContext();
    }

    /// <summary>
    /// The last exception a user-supplied allocator or hook threw into this domain, which the domain turned into a null
    /// return (allocations) or ignored (free), as the contract requires; <see langword="null"/> when none has. Such a
    /// fault is also counted in <see cref="DomainStatistics.Failures"/>, and each allocator's first is logged (event 4501).
    /// A fault of the runtime's own allocators is never recorded here: it is memory corruption and is reported as such.
    /// </summary>
    public Exception? LastFault => _lastFault;

    private volatile Exception? _lastFault;

    // ---- lifetime: calls in flight, and the closed state after Dispose ------------------------------------------
    //
    // Every front-door call counts itself in its thread's context (ThreadContext.InCall) before it loads the pipeline,
    // and uncounts itself when it returns; a pipeline whose chain throws by design (the debug hooks' violations) uncounts
    // it before the exception leaves. Close() swaps the chain for the ClosedAllocator and its pipeline; Dispose then
    // issues a process-wide barrier and waits until no context counts a call in flight before it releases anything. So a
    // call either loaded the real chain and is waited for, or loads the closed one and touches nothing: a call racing
    // with Dispose fails cleanly (null, or a free that does nothing), and no call ever runs on released memory.
    // Cost on the hot path: two stores to a field of the thread's own context, which no other thread writes.

    /// <summary>Counts a call in flight on this thread; the store is ordered before the load of the pipeline.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void Enter(ThreadContext* context) => Volatile.Write(ref context->InCall, context->InCall + 1);

    /// <summary>Uncounts the call; every access the call made is ordered before this store. Pipelines call it for a call
    /// that leaves by an exception.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static void Leave(ThreadContext* context) => Volatile.Write(ref context->InCall, context->InCall - 1);

    /// <summary>Whether the runtime that owns this domain has been disposed (the domain then refuses every request).</summary>
    public bool IsClosed => _closed;

    private volatile bool _closed;

    /// <summary>
    /// Closes the domain (the runtime's Dispose): from the next call on, allocations return null and frees do nothing,
    /// whatever the chain was. Calls already in flight finish on the old chain; the runtime waits for them.
    /// </summary>
    internal void Close()
    {
        lock (_chainLock)
        {
            _closed = true;
            SetTopUnsynchronized(ClosedAllocator.Instance);
        }
    }

    private int _usedAfterDisposeLogged;

    /// <summary>A call after <see cref="Close"/>: logged once per domain (the block of a free stays where it is, untouched).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void* UsedAfterDispose(MemoryOperation operation, void* ptr)
    {
        if (Interlocked.Exchange(ref _usedAfterDisposeLogged, 1) == 0)
        {
            Diagnostics.RuntimeMemoryLog.UsedAfterDispose(_logger, Name, ViolationReport.OperationName(operation), (nuint)ptr);
        }

        return null;
    }

    private void ThrowIfClosed()
    {
        if (_closed)
        {
            throw new ObjectDisposedException($"{Name} domain", $"The runtime that owns the {Name} domain has been disposed: its allocator chain cannot be changed.");
        }
    }

    /// <summary>Counts a null return; the cold tail of every front-door method.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void* Rejected()
    {
        _accounting.OnFailed(_index);
        return null;
    }

    /// <summary>
    /// The budget refused a block already allocated (the check comes with the accounting, after the allocator):
    /// frees it through <paramref name="allocator"/>, uncounted as it was, and counts the refusal.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void* RefusedByLimit(MemoryAllocator allocator, void* block)
    {
        try
        {
            allocator.Free(block);
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            Faulted(allocator, ex, MemoryOperation.Free); // counted as a failure too; the refusal below is the reason the caller sees
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
    internal bool BudgetReservesResize(MemoryAllocator top, void* ptr, nuint newSize, out long reserved)
    {
        long after = (long)top.AccountedSizeOf(newSize);
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

    /// <summary>A resize the budget refused before it was made (the block is as it was): counted as a refusal.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void* RefusedResize()
    {
        _accounting.OnRefused(_index);
        return null;
    }

    /// <summary>
    /// An exception reached the domain's barrier. Raised by the runtime's own code (a built-in allocator or hook), it is
    /// memory corruption: reported, and the process stops unless the debug hooks are installed on this domain with
    /// another <see cref="ViolationAction"/> (under <see cref="ViolationAction.Log"/> the call then fails with null).
    /// Raised by a user-supplied allocator or hook, it becomes a counted failure (a null return), recorded in
    /// <see cref="LastFault"/> and logged once per allocator.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal void* Faulted(MemoryAllocator allocator, Exception ex, MemoryOperation operation)
    {
        if (AllocatorFaults.RaisedByRuntime(ex))
        {
            string chain = DescribeChain();
            MemoryViolation violation = ViolationReport.Corruption(MemoryViolationKind.AllocatorFault, operation, Kind, chain, 0,
                $"{ex.GetType().FullName}: {ex.Message}",
                $"    Raised inside the runtime's own allocator code, at:\n{Indent(ex.StackTrace)}", DebugHook is not null);
            _debugger.ReportCorruption(violation, this); // returns only under the debug hooks' Log
            return Rejected();
        }

        var fault = new AllocatorFaultException(
            $"Allocator '{allocator.Name}' of the {Name} domain threw {ex.GetType().Name}: {ex.Message}. Allocators must return null instead of throwing; the domain did so for it.",
            ex);
        _lastFault = fault;
        if (_faultsLogged.TryAdd(allocator, fault))
        {
            Diagnostics.RuntimeMemoryLog.AllocatorFaulted(_logger, allocator.Name, Name, ex.GetType().Name, ex.Message, ex);
        }

        return Rejected();
    }

    /// <summary>The user allocators whose first fault has been logged (once each).</summary>
    private readonly System.Runtime.CompilerServices.ConditionalWeakTable<MemoryAllocator, AllocatorFaultException> _faultsLogged = new();

    private static string Indent(string? stackTrace) =>
        string.Concat((stackTrace ?? "").Split('\n').Where(l => l.Trim().Length > 0).Take(12).Select(l => $"      {l.Trim()}\n"));

    /// <summary>Memory corruption a built-in allocator of this domain found in its own bookkeeping (see <see cref="MemoryDebugger.ReportCorruption"/>).</summary>
    internal void ReportCorruption(MemoryViolation violation) => _debugger.ReportCorruption(violation, this);

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
        (long quarantinedBytes, long quarantinedBlocks) = _debugger.Quarantined(Kind);
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
            SmallObjects = (parts & StatisticsParts.SmallObjects) != 0 ? _base.GetPoolStatistics() : null,
            QuarantinedBytes = quarantinedBytes,
            QuarantinedBlocks = quarantinedBlocks,
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
