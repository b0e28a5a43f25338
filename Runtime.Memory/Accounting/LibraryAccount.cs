namespace Runtime.Memory;

/// <summary>
/// What one native library routed into the runtime holds, under its tag (<c>zlib</c>, <c>sqlite</c>, …): live blocks
/// and bytes, the peak, totals, failures, and an optional budget. Kept by the library's
/// <see cref="Extensions.LibraryRoute"/>, which sees every allocation and free the library makes; the bytes are those
/// the library asked for.
/// </summary>
/// <remarks>
/// <para>Updated with atomic operations: routed calls come from native code on any thread, never from the managed
/// hot path. Every figure is exact when no call is in flight.</para>
/// <para><b>Budget.</b> A route reserves a block's bytes (<see cref="TryReserve"/>) before it asks its domain for the
/// block, so the budget is exact under any number of threads: the live bytes never pass <see cref="MaxBytes"/>. A
/// refusal is counted in <see cref="Failures"/> and <see cref="LimitRefusals"/>, and opens an episode that is logged
/// once (event 4301); the next reservation the budget admits closes it.</para>
/// </remarks>
public sealed class LibraryAccount
{
    private long _allocations;
    private long _frees;
    private long _bytesAllocated;
    private long _liveBytes;
    private long _peakBytes;
    private long _failures;
    private long _limitRefusals;
    private long _limit = Diagnostics.Budget.None;
    private int _episodeOpen;
    private Diagnostics.BudgetLog? _budgetLog;
    private Microsoft.Extensions.Logging.ILogger? _logger;

    internal LibraryAccount(string tag) => Tag = tag;

    /// <summary>The library's tag.</summary>
    public string Tag { get; }

    /// <summary>Blocks the library holds now.</summary>
    public long LiveBlocks => Interlocked.Read(ref _allocations) - Interlocked.Read(ref _frees);

    /// <summary>Bytes the library holds now (reserved for blocks being allocated included).</summary>
    public long LiveBytes => Interlocked.Read(ref _liveBytes);

    /// <summary>The most bytes it has held at once (read after each allocation; with threads allocating at once it may
    /// include another's reservation in flight, never more than the budget).</summary>
    public long PeakBytes => Interlocked.Read(ref _peakBytes);

    /// <summary>Allocations (a realloc counts as one allocation and one free when it moves or resizes).</summary>
    public long Allocations => Interlocked.Read(ref _allocations);

    /// <summary>Frees.</summary>
    public long Frees => Interlocked.Read(ref _frees);

    /// <summary>Bytes the library has asked for over its life (realloc growth included).</summary>
    public long BytesAllocated => Interlocked.Read(ref _bytesAllocated);

    /// <summary>Requests that returned null: the domain's refusals (out of memory, its budget) and this tag's budget's.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>The part of <see cref="Failures"/> that this tag's budget refused.</summary>
    public long LimitRefusals => Interlocked.Read(ref _limitRefusals);

    /// <summary>
    /// The tag's budget: the most bytes the library may hold, or <see langword="null"/> for none (the default).
    /// Can be changed at any time; a budget below <see cref="LiveBytes"/> refuses growth until the library frees.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative value.</exception>
    public long? MaxBytes
    {
        get => Diagnostics.Budget.ToMaxBytes(Interlocked.Read(ref _limit));
        set
        {
            long limit = Diagnostics.Budget.FromMaxBytes(value);
            Diagnostics.RuntimeMemoryLog.LimitChangedIf(_logger, BudgetName, Interlocked.Exchange(ref _limit, limit), limit);
        }
    }

    private string BudgetName => $"library '{Tag}'";

    internal void AttachLog(Microsoft.Extensions.Logging.ILogger logger, TimeProvider time)
    {
        _logger = logger;
        _budgetLog = new Diagnostics.BudgetLog(logger, time, BudgetName);
    }

    /// <summary>
    /// Reserves <paramref name="growth"/> more live bytes (negative: gives bytes back, always admitted); false, counted
    /// and logged as a refusal, when that would pass the budget. The caller then allocates, and on failure gives the
    /// bytes back with <see cref="Unreserve"/>.
    /// </summary>
    internal bool TryReserve(long growth)
    {
        if (growth <= 0)
        {
            Interlocked.Add(ref _liveBytes, growth);
            return true;
        }

        long limit = Interlocked.Read(ref _limit);
        if (!Accounting.AtomicLimit.TryAdd(ref _liveBytes, growth, limit, out long live))
        {
            Refused(live, growth, limit);
            return false;
        }

        if (Volatile.Read(ref _episodeOpen) != 0)
        {
            Interlocked.Exchange(ref _episodeOpen, 0);
        }

        return true;
    }

    /// <summary>Gives back bytes <see cref="TryReserve"/> reserved for an allocation that then failed.</summary>
    internal void Unreserve(long growth) => Interlocked.Add(ref _liveBytes, -growth);

    /// <summary>Counts a block the library now holds, whose bytes were reserved.</summary>
    internal void OnAllocated(nuint size)
    {
        Interlocked.Increment(ref _allocations);
        Interlocked.Add(ref _bytesAllocated, (long)size);
        RaisePeak();
    }

    /// <summary>The peak follows blocks the domain served, not reservations it may still refuse.</summary>
    private void RaisePeak() => Accounting.AtomicMax.Raise(ref _peakBytes, Interlocked.Read(ref _liveBytes));

    /// <summary>Counts a resize, whose growth was reserved: one free and one allocation, as before budgets.</summary>
    internal void OnReallocated(nuint newSize)
    {
        Interlocked.Increment(ref _frees);
        Interlocked.Increment(ref _allocations);
        Interlocked.Add(ref _bytesAllocated, (long)newSize);
        RaisePeak();
    }

    /// <summary>Counts a block the library freed, and gives its bytes back.</summary>
    internal void OnFreed(nuint size)
    {
        Interlocked.Increment(ref _frees);
        Interlocked.Add(ref _liveBytes, -(long)size);
    }

    /// <summary>Counts a request the domain answered with null (the domain counts its own reason).</summary>
    internal void OnFailed() => Interlocked.Increment(ref _failures);

    private void Refused(long live, long request, long limit)
    {
        Interlocked.Increment(ref _failures);
        Interlocked.Increment(ref _limitRefusals);
        if (Interlocked.Exchange(ref _episodeOpen, 1) == 0)
        {
            _budgetLog?.EpisodeStarted(live, request, limit);
        }
    }

    /// <inheritdoc/>
    public override string ToString() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Tag}: {LiveBlocks:N0} live blocks, {LiveBytes:N0} live bytes, peak {PeakBytes:N0}");
}
