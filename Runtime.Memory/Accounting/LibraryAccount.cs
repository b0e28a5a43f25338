using Runtime.Memory.Accounting;
using Runtime.Memory.Threading;

namespace Runtime.Memory.Accounting;

/// <summary>
/// What one native library routed into the runtime holds, under its tag (<c>zlib</c>, <c>sqlite</c>, …): live blocks
/// and bytes, the peak, totals, failures, and an optional budget. Kept by the library's
/// <see cref="Extensions.LibraryRoute"/>, which sees every allocation and free the library makes; the bytes are those
/// the library asked for.
/// </summary>
/// <remarks>
/// <para><b>Accounting.</b> A tag is one account of the runtime's accounting, the same primitive the domains use
/// (<see cref="MemoryAccounting"/>): each thread counts in its own context, so a routed allocation writes no shared
/// cache line and takes no atomic. Every figure is a sum over threads, exact when no call is in flight; the peak is
/// exact while one thread allocates, and within <c>(T − 1) × 64 KiB</c> with T threads, as for a domain.</para>
/// <para><b>Budget.</b> Exact under any number of threads: with a budget set, every growth is published to the
/// tag's shared total by a compare-exchange that admits it only within the budget (the accounting's exact mode), so the
/// live bytes never pass <see cref="MaxBytes"/>. That costs an atomic per growth, on a budgeted tag only. A resize
/// reserves its growth before it is made; a shrink is never refused. A refusal is counted in <see cref="Failures"/> and
/// <see cref="LimitRefusals"/>, and opens an episode that is logged once (event 4301); the next growth the budget
/// admits closes it.</para>
/// </remarks>
public sealed unsafe class LibraryAccount
{
    private readonly MemoryAccounting _accounting;

    /// <summary>This tag's account index in the accounting and in every thread's context.</summary>
    private readonly int _index;

    /// <inheritdoc cref="_index"/>
    internal int Index => _index;

    /// <summary>The tag's shared tracker, for a native fast path (see <see cref="MemoryAccounting.TrackerOf"/>).</summary>
    internal PeakTracker* Tracker => _accounting.TrackerOf(_index);

    internal LibraryAccount(string tag, MemoryAccounting accounting, int index)
    {
        Tag = tag;
        _accounting = accounting;
        _index = index;
    }

    /// <summary>The library's tag.</summary>
    public string Tag { get; }

    private DomainCounters Read(out long peak) => _accounting.Read(_index, out peak);

    /// <summary>Blocks the library holds now.</summary>
    public long LiveBlocks
    {
        get
        {
            DomainCounters c = Read(out _);
            return c.Allocations - c.Frees;
        }
    }

    /// <summary>Bytes the library holds now.</summary>
    public long LiveBytes
    {
        get
        {
            DomainCounters c = Read(out _);
            return c.BytesAllocated - c.BytesFreed;
        }
    }

    /// <summary>The most bytes it has held at once (see the remarks for its exactness under threads; never more than
    /// the budget).</summary>
    public long PeakBytes
    {
        get
        {
            Read(out long peak);
            return peak;
        }
    }

    /// <summary>Allocations (a realloc counts as one allocation and one free).</summary>
    public long Allocations
    {
        get
        {
            DomainCounters c = Read(out _);
            return c.Allocations + c.Reallocations;
        }
    }

    /// <summary>Frees (a realloc counts as one allocation and one free).</summary>
    public long Frees
    {
        get
        {
            DomainCounters c = Read(out _);
            return c.Frees + c.Reallocations;
        }
    }

    /// <summary>Bytes the library has asked for over its life (realloc growth included).</summary>
    public long BytesAllocated => Read(out _).BytesAllocated;

    /// <summary>Requests that returned null: the domain's refusals (out of memory, its budget) and this tag's budget's.</summary>
    public long Failures => Read(out _).Failures;

    /// <summary>The part of <see cref="Failures"/> that this tag's budget refused.</summary>
    public long LimitRefusals => Read(out _).LimitRefusals;

    /// <summary>
    /// The tag's budget: the most bytes the library may hold, or <see langword="null"/> for none (the default).
    /// Can be changed at any time; a budget below <see cref="LiveBytes"/> refuses growth until the library frees.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative value.</exception>
    public long? MaxBytes
    {
        get => Diagnostics.Budget.ToMaxBytes(_accounting.LimitOf(_index));
        set
        {
            long limit = Diagnostics.Budget.FromMaxBytes(value);
            long previous = _accounting.LimitOf(_index);
            _accounting.SetLimit(_index, limit, exact: true);
            Diagnostics.RuntimeMemoryLog.LimitChangedIf(_logger, BudgetName, previous, limit);
        }
    }

    private Microsoft.Extensions.Logging.ILogger? _logger;

    private string BudgetName => $"library '{Tag}'";

    internal void AttachLog(Microsoft.Extensions.Logging.ILogger logger, TimeProvider time)
    {
        _logger = logger;
        _accounting.SetBudgetLog(_index, new Diagnostics.BudgetLog(logger, time, BudgetName));
    }

    // ---- what a route calls (the calling thread's context in hand) -------------------------------------------

    /// <summary>The calling thread's context of the runtime, for the calls below.</summary>
    internal ThreadContext* Context() => _accounting.CurrentContext();

    /// <summary>Counts a block of <paramref name="size"/> bytes the domain served; false when the tag's budget refuses
    /// it (counted, and logged once per episode): the route then frees the block and returns null.</summary>
    internal bool Admit(ThreadContext* context, nuint size)
    {
        if (_accounting.OnAllocated(ref context->Accounts[_index], _index, size))
        {
            return true;
        }

        _accounting.OnRefused(_index);
        return false;
    }

    /// <summary>Counts a block of <paramref name="size"/> bytes the library freed.</summary>
    internal void Freed(ThreadContext* context, nuint size) => _accounting.OnFreed(ref context->Accounts[_index], _index, size);

    /// <summary>
    /// Before resizing a block of <paramref name="oldSize"/> bytes to <paramref name="newSize"/>: with a budget, reserves
    /// the growth (false, counted and logged, when the budget refuses it; a shrink always passes).
    /// </summary>
    internal bool ReserveResize(nuint oldSize, nuint newSize, out long reserved)
    {
        reserved = 0;
        long growth = (long)newSize - (long)oldSize;
        if (growth <= 0 || !_accounting.IsLimited(_index))
        {
            return true;
        }

        if (_accounting.TryReserve(_index, growth))
        {
            reserved = growth;
            return true;
        }

        _accounting.RefuseGrowth(_index, growth);
        _accounting.OnRefused(_index);
        return false;
    }

    /// <summary>Counts a resize the domain made (one allocation and one free in the public figures).</summary>
    internal void Resized(ThreadContext* context, nuint oldSize, nuint newSize, long reserved) =>
        _accounting.OnReallocated(context, _index, oldSize, newSize, reserved);

    /// <summary>A resize the domain refused: the reservation goes back and the failure is counted.</summary>
    internal void ResizeFailed(long reserved)
    {
        _accounting.Unreserve(_index, reserved);
        OnFailed();
    }

    /// <summary>Counts a request the domain answered with null (the domain counts its own reason).</summary>
    internal void OnFailed() => _accounting.OnFailed(_index);

    /// <inheritdoc/>
    public override string ToString() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Tag}: {LiveBlocks:N0} live blocks, {LiveBytes:N0} live bytes, peak {PeakBytes:N0}");
}
