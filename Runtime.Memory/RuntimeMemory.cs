using Runtime.Memory.Accounting;
using Microsoft.Extensions.Logging;
using Runtime.Memory.Hosting;

namespace Runtime.Memory;

/// <summary>
/// The memory service: three domains (<c>raw</c>, <c>mem</c>, <c>obj</c>) over base allocators chosen by an
/// <see cref="IAllocatorProvider"/>, with per-domain accounting. Every instance owns its state: two runtimes in one
/// process share nothing but the C runtime's heap.
/// </summary>
/// <remarks>
/// Hosts normally get it from DI (<c>services.AddRuntimeMemory()</c>); without DI use <see cref="Create"/>, which
/// validates the options the same way.
/// </remarks>
public sealed class RuntimeMemory : IRuntimeMemory, IDisposable
{
    private readonly MemoryDomain[] _domains;

    /// <summary>Creates the domains over the base allocators <paramref name="provider"/> gives, with default debug settings.</summary>
    public RuntimeMemory(IAllocatorProvider provider)
        : this(provider, null, null)
    {
    }

    /// <summary>
    /// Creates the domains over the base allocators <paramref name="provider"/> gives. The debug hooks are installed
    /// at once when <paramref name="options"/> name a debug allocator (<see cref="AllocatorNames.IsDebug"/>), over
    /// whatever the provider returned; <paramref name="options"/>' <c>Debug</c> settings apply whenever they are.
    /// Violations are logged through <paramref name="loggerFactory"/> (category <c>Runtime.Memory.Debug</c>), or to
    /// stderr without one.
    /// </summary>
    public RuntimeMemory(IAllocatorProvider provider, RuntimeMemoryOptions? options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(provider);
        var accounting = new MemoryAccounting();
        Accounting = accounting;
        AllocatorName = provider.Name;
        Debugger = new MemoryDebugger(options?.Debug, loggerFactory?.CreateLogger("Runtime.Memory.Debug"));
        _domains = new MemoryDomain[MemoryDomainKindExtensions.Count];
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            MemoryAllocator allocator = provider.CreateBaseAllocator(kind)
                ?? throw new InvalidOperationException($"Allocator provider '{provider.Name}' returned no allocator for the {kind.ToName()} domain.");
            _domains[(int)kind] = new MemoryDomain(kind, allocator, accounting, Debugger);
        }

        if (AllocatorNames.IsDebug(options?.Allocator))
        {
            SetupDebugHooks();
        }

        Tracer = new Tracing.MemoryTracer(this);
        _tracingOptions = options?.Tracing ?? new RuntimeMemoryTracingOptions();
        _leakLogger = loggerFactory?.CreateLogger("Runtime.Memory.Tracing");
        if (_tracingOptions.Enabled)
        {
            Tracer.Start(_tracingOptions.Frames, _tracingOptions.SampleBytes); // above the debug hooks
        }
    }

    /// <summary>The per-thread accounting of the three domains (the tracer keeps its traced bytes in the same shards).</summary>
    internal MemoryAccounting Accounting { get; }

    private readonly RuntimeMemoryTracingOptions _tracingOptions;
    private readonly ILogger? _leakLogger;

    /// <summary>Allocation tracing of the three domains (tracemalloc): start, stop, snapshots, tracebacks of blocks.</summary>
    public Tracing.MemoryTracer Tracer { get; }

    private nint _nativeApi;

    private readonly Lock _processGlobalLock = new();
    private Action? _processGlobalRoutes;

    /// <summary>
    /// Binds a process-global library route to this runtime: <paramref name="close"/> runs first when the runtime is
    /// disposed.
    /// </summary>
    internal void BindProcessGlobalRoute(Action close)
    {
        lock (_processGlobalLock)
        {
            _processGlobalRoutes += close;
        }
    }

    /// <summary>
    /// The function table native code uses to reach this runtime (<c>rtmem_api</c> in <c>runtime_mem.h</c>): created on
    /// first use, valid until the runtime is disposed. Hand it to an extension with <see cref="Interop.NativeExtension"/>.
    /// </summary>
    public unsafe Interop.RtMemApi* NativeApi
    {
        get
        {
            nint table = Volatile.Read(ref _nativeApi);
            if (table != 0)
            {
                return (Interop.RtMemApi*)table;
            }

            Interop.RtMemApi* created = Interop.NativeApi.Create(this);
            nint raced = Interlocked.CompareExchange(ref _nativeApi, (nint)created, 0);
            if (raced != 0)
            {
                Interop.NativeApi.Release(created);
                return (Interop.RtMemApi*)raced;
            }

            return created;
        }
    }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, LibraryAccount> _tags = new(StringComparer.Ordinal);

    /// <summary>
    /// The account of the native library tagged <paramref name="tag"/> (created on first use): what the library's
    /// route into this runtime holds. Routes with the same tag share one account.
    /// </summary>
    public LibraryAccount Tag(string tag)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(tag);
        return _tags.GetOrAdd(tag, static t => new LibraryAccount(t));
    }

    /// <summary>Every library account, by tag.</summary>
    public IReadOnlyCollection<LibraryAccount> Tags => _tags.Values.OrderBy(a => a.Tag, StringComparer.Ordinal).ToArray();

    /// <summary>The debug state shared by the domains' debug hooks (shadow map, serial numbers, violations).</summary>
    public MemoryDebugger Debugger { get; }

    private Diagnostics.RuntimeMemoryMetrics? _metrics;

    /// <summary>The instruments on the <c>Runtime.Memory</c> meter, once <see cref="EnableMetrics"/> has created them (DI does
    /// when an <see cref="System.Diagnostics.Metrics.IMeterFactory"/> is registered); null before.</summary>
    public Diagnostics.RuntimeMemoryMetrics? Metrics => _metrics;

    /// <summary>
    /// Creates this runtime's instruments on a meter from <paramref name="meterFactory"/> (see
    /// <see cref="Diagnostics.RuntimeMemoryMetrics"/>); they stop reporting when the runtime is disposed.
    /// </summary>
    /// <exception cref="InvalidOperationException">Metrics are already enabled on this runtime.</exception>
    public Diagnostics.RuntimeMemoryMetrics EnableMetrics(System.Diagnostics.Metrics.IMeterFactory meterFactory)
    {
        ArgumentNullException.ThrowIfNull(meterFactory);
        var metrics = new Diagnostics.RuntimeMemoryMetrics(this, meterFactory);
        if (Interlocked.CompareExchange(ref _metrics, metrics, null) is not null)
        {
            metrics.Dispose();
            throw new InvalidOperationException("Metrics are already enabled on this runtime; read them through RuntimeMemory.Metrics.");
        }

        return metrics;
    }

    /// <inheritdoc/>
    public void SetupDebugHooks()
    {
        foreach (MemoryDomain domain in _domains)
        {
            domain.SetupDebugHooks();
        }
    }

    /// <summary>
    /// Creates a runtime from <paramref name="options"/> (defaults when null), validated as at host start.
    /// </summary>
    /// <exception cref="Microsoft.Extensions.Options.OptionsValidationException">The options are invalid; the message names the key, the value and the allowed values.</exception>
    public static RuntimeMemory Create(RuntimeMemoryOptions? options = null)
    {
        options ??= new RuntimeMemoryOptions();
        var result = new RuntimeMemoryOptionsValidator().Validate(null, options);
        if (result.Failed)
        {
            throw new Microsoft.Extensions.Options.OptionsValidationException(
                Microsoft.Extensions.Options.Options.DefaultName, typeof(RuntimeMemoryOptions), result.Failures);
        }

        return new RuntimeMemory(new DefaultAllocatorProvider(options), options);
    }

    /// <inheritdoc/>
    public string AllocatorName { get; }

    /// <inheritdoc/>
    public MemoryDomain Raw => _domains[(int)MemoryDomainKind.Raw];

    /// <inheritdoc/>
    public MemoryDomain Mem => _domains[(int)MemoryDomainKind.Mem];

    /// <inheritdoc/>
    public MemoryDomain Obj => _domains[(int)MemoryDomainKind.Obj];

    /// <inheritdoc/>
    public MemoryDomain this[MemoryDomainKind kind] =>
        (uint)kind < (uint)_domains.Length
            ? _domains[(int)kind]
            : throw new ArgumentOutOfRangeException(nameof(kind), kind, "Domain kinds are Raw (0), Mem (1) and Obj (2).");

    /// <summary>
    /// The small-object allocator under <paramref name="kind"/>'s chain, or null when that domain's base allocator is
    /// another one.
    /// </summary>
    public SmallObjectAllocator? SmallObjects(MemoryDomainKind kind) => this[kind].BaseAllocator as SmallObjectAllocator;

    /// <inheritdoc/>
    MemoryDebugger IRuntimeMemory.Debugger => Debugger;

    /// <summary>
    /// Releases what the base allocators hold (the small-object allocators' arenas). Arenas with live blocks stay
    /// mapped, as CPython leaves them at finalisation. The runtime must not be used afterwards.
    /// </summary>
    /// <remarks>
    /// A process-global library routed into this runtime (<see cref="Extensions.OpenSslRouting"/>) is closed first, so
    /// it never calls into the disposed runtime; the blocks it still holds stay valid (they are live) and are left to
    /// the process's exit.
    /// </remarks>
    public void Dispose()
    {
        Action? close;
        lock (_processGlobalLock)
        {
            close = _processGlobalRoutes;
            _processGlobalRoutes = null;
        }

        close?.Invoke();
        _metrics?.Dispose(); // before the state it reads goes away
        if (Tracer.IsTracing)
        {
            if (_tracingOptions.LeakReportOnDispose && Tracer.TracedBlocks > 0)
            {
                string report = Tracer.FormatLeakReport();
                if (_leakLogger is not null)
                {
                    _leakLogger.LogWarning(new EventId(4101, "LeakReport"), "{Report}", report);
                }
                else
                {
                    Console.Error.Write(report);
                }
            }
        }

        Tracer.Dispose();

        foreach (MemoryDomain domain in _domains)
        {
            (domain.BaseAllocator as IDisposable)?.Dispose();
        }

        Debugger.Dispose();
        unsafe
        {
            Interop.NativeApi.Release((Interop.RtMemApi*)Interlocked.Exchange(ref _nativeApi, 0));
        }
    }

    /// <inheritdoc/>
    public RuntimeMemoryStatistics GetStatistics() =>
        new(AllocatorName, _domains.Select(d => d.GetStatistics()).ToArray());
}
