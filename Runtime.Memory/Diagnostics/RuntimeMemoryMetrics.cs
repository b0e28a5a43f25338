using System.Diagnostics.Metrics;

namespace Runtime.Memory.Diagnostics;

/// <summary>
/// The memory service's instruments on the <c>Runtime.Memory</c> meter, for <c>dotnet-counters</c>, OpenTelemetry and
/// any <see cref="MeterListener"/>: native memory is invisible to <c>dotnet.gc.*</c>, so the service reports it itself.
/// </summary>
/// <remarks>
/// <para>Every instrument is observable: its callback reads the service's statistics snapshot
/// (<see cref="RuntimeMemory.GetStatistics()"/>, the one source the host's report and the tests read too), which sums the
/// counters the allocation path keeps anyway. Nothing is added to the allocation path, whether anyone listens or not.</para>
/// <para>Names follow the OpenTelemetry conventions: lowercase dotted names, UCUM units (<c>By</c>, <c>{block}</c>),
/// totals as <see cref="ObservableCounter{T}"/>, current sizes as <see cref="ObservableUpDownCounter{T}"/>, and the
/// tags <c>memory.domain</c> (<c>raw</c>, <c>mem</c>, <c>obj</c>), <c>memory.library</c> (a route's tag) and
/// <c>error.type</c> (<c>out_of_memory</c>, <c>limit</c>). An instrument with nothing to report (tracing off, no
/// budget, no domain on the small-object allocator) yields no measurement rather than 0, as the runtime's own meter does.</para>
/// <para>Names follow the OpenTelemetry semantic conventions: an UpDownCounter of things is <c>*.count</c>, never a
/// plural, and no name says <c>total</c>.</para>
/// <code>
///   instrument                                  kind           unit           tags
///   runtime.memory.usage                        UpDownCounter  By             memory.domain
///   runtime.memory.block.count                  UpDownCounter  {block}        memory.domain
///   runtime.memory.peak_usage                   Gauge          By             memory.domain
///   runtime.memory.limit                        UpDownCounter  By             memory.domain (domains with a budget)
///   runtime.memory.allocated                    Counter        By             memory.domain
///   runtime.memory.allocations                  Counter        {allocation}   memory.domain
///   runtime.memory.allocation.failures          Counter        {failure}      memory.domain, error.type
///   runtime.memory.debug.violations             Counter        {violation}
///   runtime.memory.arena.count                  UpDownCounter  {arena}        memory.domain (pymalloc domains)
///   runtime.memory.pool.count                   UpDownCounter  {pool}         memory.domain (pymalloc domains)
///   runtime.memory.tracing.usage                UpDownCounter  By             (while tracing)
///   runtime.memory.tracing.block.count          UpDownCounter  {block}        (while tracing)
///   runtime.memory.library.usage                UpDownCounter  By             memory.library
///   runtime.memory.library.block.count          UpDownCounter  {block}        memory.library
///   runtime.memory.library.limit                UpDownCounter  By             memory.library (tags with a budget)
///   runtime.memory.library.allocation.failures  Counter        {failure}      memory.library, error.type
/// </code>
/// <para>The meter comes from the <see cref="IMeterFactory"/> the host registers (the generic host does; elsewhere
/// <c>services.AddMetrics()</c>), so each container's meters are its own and disposed with it. With DI,
/// <c>AddRuntimeMemory</c> attaches the metrics when an <see cref="IMeterFactory"/> is registered; without DI, call
/// <see cref="RuntimeMemory.EnableMetrics"/>.</para>
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
    /// <c>error.type</c> of a request the domain answered with null for want of memory: an allocator out of memory, or
    /// a size no allocator can serve (over <see cref="MemoryDomain.MaxRequestSize"/>, a calloc whose product overflows).
    /// </summary>
    public const string OutOfMemory = "out_of_memory";

    /// <summary><c>error.type</c> of a request a budget refused (<see cref="MemoryDomain.MaxBytes"/>, <see cref="LibraryAccount.MaxBytes"/>).</summary>
    public const string Limit = "limit";

    private static readonly KeyValuePair<string, object?>[][] DomainTags = TagsPerDomain(null);

    private static readonly KeyValuePair<string, object?>[][] OutOfMemoryTags = TagsPerDomain(OutOfMemory);

    private static readonly KeyValuePair<string, object?>[][] LimitTags = TagsPerDomain(Limit);

    /// <summary>The tag lists, made once, so that a collection allocates no tags.</summary>
    private static KeyValuePair<string, object?>[][] TagsPerDomain(string? errorType)
    {
        var tags = new KeyValuePair<string, object?>[MemoryDomainKindExtensions.Count][];
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            var domain = new KeyValuePair<string, object?>(DomainTag, kind.ToName());
            tags[(int)kind] = errorType is null ? [domain] : [domain, new KeyValuePair<string, object?>(ErrorTypeTag, errorType)];
        }

        return tags;
    }

    private readonly RuntimeMemory _runtime;
    private readonly Meter _meter;
    private volatile bool _disposed;

    /// <summary>Creates the instruments for <paramref name="runtime"/> on a meter from <paramref name="meterFactory"/>.</summary>
    public RuntimeMemoryMetrics(IRuntimeMemory runtime, IMeterFactory meterFactory)
    {
        _runtime = RuntimeMemory.Of(runtime);
        ArgumentNullException.ThrowIfNull(meterFactory);
        _meter = meterFactory.Create(MeterName);

        _meter.CreateObservableUpDownCounter("runtime.memory.usage", () => PerDomain(static d => d.LiveBytes),
            "By", "Bytes callers requested that are live now, per domain.");
        _meter.CreateObservableUpDownCounter("runtime.memory.block.count", () => PerDomain(static d => d.LiveBlocks),
            "{block}", "Blocks allocated and not yet freed, per domain.");
        _meter.CreateObservableGauge("runtime.memory.peak_usage", () => PerDomain(static d => d.PeakBytes),
            "By", "The highest live bytes since the domain was created.");
        _meter.CreateObservableUpDownCounter("runtime.memory.limit", () => PerDomain(static d => d.MaxBytes),
            "By", "The domain's budget (RuntimeMemory:Limits:<domain>:MaxBytes), for domains that have one.");
        _meter.CreateObservableCounter("runtime.memory.allocated", () => PerDomain(static d => d.BytesAllocated),
            "By", "Bytes requested over the domain's life, including realloc growth (the native twin of dotnet.gc.heap.total_allocated).");
        _meter.CreateObservableCounter("runtime.memory.allocations", () => PerDomain(static d => d.Allocations),
            "{allocation}", "Blocks created: malloc, calloc and realloc of null.");
        _meter.CreateObservableCounter("runtime.memory.allocation.failures", Failures,
            "{failure}", "Requests the domain answered with null, by reason: out_of_memory or limit (its budget).");
        _meter.CreateObservableUpDownCounter("runtime.memory.debug.quarantine.usage", () => PerDomain(static d => d.QuarantinedBytes),
            "By", "Bytes of freed blocks held in the debug hooks' quarantine, per domain: not live, not in the budget.");
        _meter.CreateObservableCounter("runtime.memory.debug.violations", Violations,
            "{violation}", "Misuses the debug hooks found (overruns, double frees, frees through the wrong domain).");
        _meter.CreateObservableUpDownCounter("runtime.memory.arena.count", () => PerDomain(static d => d.SmallObjects?.ArenasCurrent, StatisticsParts.SmallObjects),
            "{arena}", "Arenas the small-object allocator has mapped, per domain on it.");
        _meter.CreateObservableUpDownCounter("runtime.memory.pool.count", () => PerDomain(static d => d.SmallObjects?.Classes.Sum(c => c.Pools), StatisticsParts.SmallObjects),
            "{pool}", "Pools of the small-object allocator in use (carved for a size class), per domain on it.");
        _meter.CreateObservableUpDownCounter("runtime.memory.tracing.usage", () => Tracing(static t => t.TracingMemory),
            "By", "Bytes allocation tracing itself uses (tracemalloc's get_tracemalloc_memory).");
        _meter.CreateObservableUpDownCounter("runtime.memory.tracing.block.count", () => Tracing(static t => t.TracedBlocks),
            "{block}", "Blocks the tracer holds a trace of.");
        _meter.CreateObservableUpDownCounter("runtime.memory.library.usage", () => PerLibrary(static a => a.LiveBytes),
            "By", "Bytes a native library routed into the runtime holds, per library tag.");
        _meter.CreateObservableUpDownCounter("runtime.memory.library.block.count", () => PerLibrary(static a => a.LiveBlocks),
            "{block}", "Blocks a native library routed into the runtime holds, per library tag.");
        _meter.CreateObservableUpDownCounter("runtime.memory.library.limit", () => PerLibrary(static a => a.MaxBytes),
            "By", "The library tag's budget (RuntimeMemory:Limits:Tags:<tag>:MaxBytes), for tags that have one.");
        _meter.CreateObservableCounter("runtime.memory.library.allocation.failures", LibraryFailures,
            "{failure}", "Requests of a native library that returned null, by reason: out_of_memory, or limit (the tag's budget).");
    }

    /// <summary>The meter the instruments are on.</summary>
    public Meter Meter => _meter;

    /// <summary>
    /// Stops the instruments reporting (they yield nothing from now on). The meter itself belongs to the factory and is
    /// disposed with it. The runtime calls this when it is disposed.
    /// </summary>
    public void Dispose() => _disposed = true;

    /// <summary>
    /// The snapshot a callback reads, with the parts it reports (the snapshot's own code: reading only what is needed
    /// keeps a collection to a few microseconds); null once disposed (the callbacks then yield nothing).
    /// </summary>
    private RuntimeMemoryStatistics? Snapshot(StatisticsParts parts = StatisticsParts.Counters) => _disposed ? null : _runtime.GetStatistics(parts);

    private IEnumerable<Measurement<long>> PerDomain(Func<DomainStatistics, long?> figure, StatisticsParts parts = StatisticsParts.Counters)
    {
        if (Snapshot(parts) is not { } statistics)
        {
            return [];
        }

        var measurements = new List<Measurement<long>>(MemoryDomainKindExtensions.Count);
        foreach (DomainStatistics domain in statistics.Domains)
        {
            if (figure(domain) is long value)
            {
                measurements.Add(new Measurement<long>(value, DomainTags[(int)domain.Domain]));
            }
        }

        return measurements;
    }

    private IEnumerable<Measurement<long>> Failures()
    {
        if (Snapshot() is not { } statistics)
        {
            return [];
        }

        var measurements = new List<Measurement<long>>(2 * MemoryDomainKindExtensions.Count);
        foreach (DomainStatistics domain in statistics.Domains)
        {
            measurements.Add(new Measurement<long>(domain.OutOfMemoryFailures, OutOfMemoryTags[(int)domain.Domain]));
            measurements.Add(new Measurement<long>(domain.LimitRefusals, LimitTags[(int)domain.Domain]));
        }

        return measurements;
    }

    private IEnumerable<Measurement<long>> Violations() =>
        Snapshot(StatisticsParts.Debug) is { } statistics ? [new Measurement<long>(statistics.Debug.Violations)] : [];

    private IEnumerable<Measurement<long>> Tracing(Func<TracingStatistics, long> figure) =>
        Snapshot(StatisticsParts.Tracing) is { Tracing.IsTracing: true } statistics ? [new Measurement<long>(figure(statistics.Tracing))] : [];

    private IEnumerable<Measurement<long>> PerLibrary(Func<LibraryStatistics, long?> figure)
    {
        if (Snapshot(StatisticsParts.Libraries) is not { } statistics)
        {
            return [];
        }

        var measurements = new List<Measurement<long>>(statistics.Libraries.Count);
        foreach (LibraryStatistics library in statistics.Libraries)
        {
            if (figure(library) is long value)
            {
                measurements.Add(new Measurement<long>(value, new KeyValuePair<string, object?>(LibraryTag, library.Tag)));
            }
        }

        return measurements;
    }

    private IEnumerable<Measurement<long>> LibraryFailures()
    {
        if (Snapshot(StatisticsParts.Libraries) is not { } statistics)
        {
            return [];
        }

        var measurements = new List<Measurement<long>>(2 * statistics.Libraries.Count);
        foreach (LibraryStatistics library in statistics.Libraries)
        {
            var tag = new KeyValuePair<string, object?>(LibraryTag, library.Tag);
            measurements.Add(new Measurement<long>(library.Failures - library.LimitRefusals, tag, new KeyValuePair<string, object?>(ErrorTypeTag, OutOfMemory)));
            measurements.Add(new Measurement<long>(library.LimitRefusals, tag, new KeyValuePair<string, object?>(ErrorTypeTag, Limit)));
        }

        return measurements;
    }
}
