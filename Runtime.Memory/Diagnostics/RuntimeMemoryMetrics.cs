using System.Diagnostics.Metrics;
using Runtime.Memory.Accounting;

namespace Runtime.Memory.Diagnostics;

/// <summary>
/// The memory service's instruments on the <c>Runtime.Memory</c> meter, for <c>dotnet-counters</c>, OpenTelemetry and
/// any <see cref="MeterListener"/>: native memory is invisible to <c>dotnet.gc.*</c>, so the service reports it itself.
/// </summary>
/// <remarks>
/// <para>Every instrument is observable: its callback reads, on the collecting thread, the counters the allocation path
/// keeps anyway (the per-thread accounting shards, the small-object allocator's arena count, the debugger's violation
/// count, the tracer's table, the library accounts). Nothing is added to the allocation path, whether anyone listens
/// or not.</para>
/// <para>Names follow the OpenTelemetry conventions: lowercase dotted names, UCUM units (<c>By</c>, <c>{block}</c>),
/// totals as <see cref="ObservableCounter{T}"/>, current sizes as <see cref="ObservableUpDownCounter{T}"/>, and the
/// tags <c>memory.domain</c> (<c>raw</c>, <c>mem</c>, <c>obj</c>), <c>memory.library</c> (a route's tag) and
/// <c>error.type</c>. An instrument with nothing to report (tracing off, no domain on the small-object allocator)
/// yields no measurement rather than 0, as the runtime's own meter does.</para>
/// <code>
///   instrument                              kind           unit           tags
///   runtime.memory.usage                    UpDownCounter  By             memory.domain
///   runtime.memory.blocks                   UpDownCounter  {block}        memory.domain
///   runtime.memory.peak_usage               Gauge          By             memory.domain
///   runtime.memory.total_allocated          Counter        By             memory.domain
///   runtime.memory.allocations              Counter        {allocation}   memory.domain
///   runtime.memory.allocation.failures      Counter        {failure}      memory.domain, error.type
///   runtime.memory.debug.violations         Counter        {violation}
///   runtime.memory.arena.count              UpDownCounter  {arena}        memory.domain (pymalloc domains)
///   runtime.memory.tracing.usage            UpDownCounter  By             (while tracing)
///   runtime.memory.tracing.blocks           UpDownCounter  {block}        (while tracing)
///   runtime.memory.library.usage            UpDownCounter  By             memory.library
///   runtime.memory.library.blocks           UpDownCounter  {block}        memory.library
/// </code>
/// <para>The meter comes from the <see cref="IMeterFactory"/> the host registers (the generic host does; elsewhere
/// <c>services.AddMetrics()</c>), so each container's meters are its own and disposed with it. With DI,
/// <c>AddRuntimeMemory</c> attaches the metrics when an <see cref="IMeterFactory"/> is registered; without DI, create
/// one over a runtime and a factory.</para>
/// </remarks>
public sealed class RuntimeMemoryMetrics : IDisposable
{
    /// <summary>The meter's name: <c>dotnet-counters monitor --counters Runtime.Memory</c>.</summary>
    public const string MeterName = "Runtime.Memory";

    /// <summary>The tag that names a domain.</summary>
    public const string DomainTag = "memory.domain";

    /// <summary>The tag that names a library route's account.</summary>
    public const string LibraryTag = "memory.library";

    /// <summary>The tag that names why an allocation failed.</summary>
    public const string ErrorTypeTag = "error.type";

    /// <summary>
    /// <c>error.type</c> of a request the domain answered with null: an allocator out of memory, or a size no
    /// allocator can serve (over <see cref="MemoryDomain.MaxRequestSize"/>, a calloc whose product overflows).
    /// </summary>
    public const string OutOfMemory = "out_of_memory";

    private static readonly KeyValuePair<string, object?>[][] DomainTags = TagsPerDomain(withErrorType: false);

    private static readonly KeyValuePair<string, object?>[][] FailureTags = TagsPerDomain(withErrorType: true);

    /// <summary>The tag lists, made once, so that a collection allocates no tags.</summary>
    private static KeyValuePair<string, object?>[][] TagsPerDomain(bool withErrorType)
    {
        var tags = new KeyValuePair<string, object?>[MemoryDomainKindExtensions.Count][];
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            var domain = new KeyValuePair<string, object?>(DomainTag, kind.ToName());
            tags[(int)kind] = withErrorType ? [domain, new KeyValuePair<string, object?>(ErrorTypeTag, OutOfMemory)] : [domain];
        }

        return tags;
    }

    private readonly RuntimeMemory _runtime;
    private readonly Meter _meter;
    private volatile bool _disposed;

    /// <summary>Creates the instruments for <paramref name="runtime"/> on a meter from <paramref name="meterFactory"/>.</summary>
    public RuntimeMemoryMetrics(RuntimeMemory runtime, IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentNullException.ThrowIfNull(meterFactory);
        _runtime = runtime;
        _meter = meterFactory.Create(MeterName);

        _meter.CreateObservableUpDownCounter("runtime.memory.usage", () => PerDomain(static c => c.BytesAllocated - c.BytesFreed),
            "By", "Bytes callers requested that are live now, per domain.");
        _meter.CreateObservableUpDownCounter("runtime.memory.blocks", () => PerDomain(static c => c.Allocations - c.Frees),
            "{block}", "Blocks allocated and not yet freed, per domain.");
        _meter.CreateObservableGauge("runtime.memory.peak_usage", Peaks,
            "By", "The highest live bytes since the domain was created.");
        _meter.CreateObservableCounter("runtime.memory.total_allocated", () => PerDomain(static c => c.BytesAllocated),
            "By", "Bytes requested over the domain's life, including realloc growth (the native twin of dotnet.gc.heap.total_allocated).");
        _meter.CreateObservableCounter("runtime.memory.allocations", () => PerDomain(static c => c.Allocations),
            "{allocation}", "Blocks created: malloc, calloc and realloc of null.");
        _meter.CreateObservableCounter("runtime.memory.allocation.failures", Failures,
            "{failure}", "Requests the domain answered with null, by reason.");
        _meter.CreateObservableCounter("runtime.memory.debug.violations", Violations,
            "{violation}", "Misuses the debug hooks found (overruns, double frees, frees through the wrong domain).");
        _meter.CreateObservableUpDownCounter("runtime.memory.arena.count", Arenas,
            "{arena}", "Arenas the small-object allocator has mapped, per domain on it.");
        _meter.CreateObservableUpDownCounter("runtime.memory.tracing.usage", TracingUsage,
            "By", "Bytes allocation tracing itself uses (tracemalloc's get_tracemalloc_memory).");
        _meter.CreateObservableUpDownCounter("runtime.memory.tracing.blocks", TracedBlocks,
            "{block}", "Blocks the tracer holds a trace of.");
        _meter.CreateObservableUpDownCounter("runtime.memory.library.usage", () => PerLibrary(static a => a.LiveBytes),
            "By", "Bytes a native library routed into the runtime holds, per library tag.");
        _meter.CreateObservableUpDownCounter("runtime.memory.library.blocks", () => PerLibrary(static a => a.LiveBlocks),
            "{block}", "Blocks a native library routed into the runtime holds, per library tag.");
    }

    /// <summary>The meter the instruments are on.</summary>
    public Meter Meter => _meter;

    /// <summary>
    /// Stops the instruments reporting (they yield nothing from now on). The meter itself belongs to the factory and is
    /// disposed with it. The runtime calls this when it is disposed.
    /// </summary>
    public void Dispose() => _disposed = true;

    private IEnumerable<Measurement<long>> PerDomain(Func<DomainCounters, long> figure)
    {
        if (_disposed)
        {
            return [];
        }

        var measurements = new Measurement<long>[MemoryDomainKindExtensions.Count];
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            DomainCounters sum = _runtime[kind].ReadCounters(out _);
            measurements[(int)kind] = new Measurement<long>(figure(sum), DomainTags[(int)kind]);
        }

        return measurements;
    }

    private IEnumerable<Measurement<long>> Peaks()
    {
        if (_disposed)
        {
            return [];
        }

        var measurements = new Measurement<long>[MemoryDomainKindExtensions.Count];
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            _runtime[kind].ReadCounters(out long peak);
            measurements[(int)kind] = new Measurement<long>(peak, DomainTags[(int)kind]);
        }

        return measurements;
    }

    private IEnumerable<Measurement<long>> Failures()
    {
        if (_disposed)
        {
            return [];
        }

        var measurements = new Measurement<long>[MemoryDomainKindExtensions.Count];
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            DomainCounters sum = _runtime[kind].ReadCounters(out _);
            measurements[(int)kind] = new Measurement<long>(sum.Failures, FailureTags[(int)kind]);
        }

        return measurements;
    }

    private IEnumerable<Measurement<long>> Violations() =>
        _disposed ? [] : [new Measurement<long>(_runtime.Debugger.Violations)];

    private IEnumerable<Measurement<long>> Arenas()
    {
        if (_disposed)
        {
            return [];
        }

        var measurements = new List<Measurement<long>>(MemoryDomainKindExtensions.Count);
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            if (_runtime.SmallObjects(kind) is { } small)
            {
                measurements.Add(new Measurement<long>(small.ArenasCurrent, DomainTags[(int)kind]));
            }
        }

        return measurements;
    }

    private IEnumerable<Measurement<long>> TracingUsage() =>
        _disposed || !_runtime.Tracer.IsTracing ? [] : [new Measurement<long>(_runtime.Tracer.TracingMemory)];

    private IEnumerable<Measurement<long>> TracedBlocks() =>
        _disposed || !_runtime.Tracer.IsTracing ? [] : [new Measurement<long>(_runtime.Tracer.TracedBlocks)];

    private IEnumerable<Measurement<long>> PerLibrary(Func<LibraryAccount, long> figure)
    {
        if (_disposed)
        {
            return [];
        }

        IReadOnlyCollection<LibraryAccount> accounts = _runtime.Tags;
        var measurements = new List<Measurement<long>>(accounts.Count);
        foreach (LibraryAccount account in accounts)
        {
            measurements.Add(new Measurement<long>(figure(account), new KeyValuePair<string, object?>(LibraryTag, account.Tag)));
        }

        return measurements;
    }
}
