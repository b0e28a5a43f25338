namespace Runtime.Memory;

/// <summary>
/// What one native library routed into the runtime holds, under its tag (<c>zlib</c>, <c>sqlite</c>, …): live blocks
/// and bytes, the peak, totals and failures. Kept by the library's <see cref="Extensions.LibraryRoute"/>, which sees
/// every allocation and free the library makes; the bytes are those the library asked for.
/// </summary>
/// <remarks>Updated with atomic operations: routed calls come from native code on any thread, never from the managed
/// hot path. Every figure is exact when no call is in flight.</remarks>
public sealed class LibraryAccount
{
    private long _allocations;
    private long _frees;
    private long _bytesAllocated;
    private long _bytesFreed;
    private long _peakBytes;
    private long _failures;

    internal LibraryAccount(string tag) => Tag = tag;

    /// <summary>The library's tag.</summary>
    public string Tag { get; }

    /// <summary>Blocks the library holds now.</summary>
    public long LiveBlocks => Interlocked.Read(ref _allocations) - Interlocked.Read(ref _frees);

    /// <summary>Bytes the library holds now.</summary>
    public long LiveBytes => Interlocked.Read(ref _bytesAllocated) - Interlocked.Read(ref _bytesFreed);

    /// <summary>The most bytes it has held at once.</summary>
    public long PeakBytes => Interlocked.Read(ref _peakBytes);

    /// <summary>Allocations (a realloc counts as one allocation and one free when it moves or resizes).</summary>
    public long Allocations => Interlocked.Read(ref _allocations);

    /// <summary>Frees.</summary>
    public long Frees => Interlocked.Read(ref _frees);

    /// <summary>Requests that returned null.</summary>
    public long Failures => Interlocked.Read(ref _failures);

    internal void OnAllocated(nuint size)
    {
        Interlocked.Increment(ref _allocations);
        long live = Interlocked.Add(ref _bytesAllocated, (long)size) - Interlocked.Read(ref _bytesFreed);
        Accounting.AtomicMax.Raise(ref _peakBytes, live);
    }

    internal void OnFreed(nuint size)
    {
        Interlocked.Increment(ref _frees);
        Interlocked.Add(ref _bytesFreed, (long)size);
    }

    internal void OnFailed() => Interlocked.Increment(ref _failures);

    /// <inheritdoc/>
    public override string ToString() =>
        string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{Tag}: {LiveBlocks:N0} live blocks, {LiveBytes:N0} live bytes, peak {PeakBytes:N0}");
}
