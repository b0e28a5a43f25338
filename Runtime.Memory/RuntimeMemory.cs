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
        : this(provider, options, loggerFactory, null)
    {
    }

    /// <summary>
    /// As <see cref="RuntimeMemory(IAllocatorProvider, RuntimeMemoryOptions?, ILoggerFactory?)"/>; the service's own
    /// events (category <c>Runtime.Memory</c>, see <see cref="Diagnostics.RuntimeMemoryLog"/>) are rate-limited by
    /// <paramref name="timeProvider"/>'s clock (the system clock when null).
    /// </summary>
    public RuntimeMemory(IAllocatorProvider provider, RuntimeMemoryOptions? options, ILoggerFactory? loggerFactory, TimeProvider? timeProvider)
        : this(provider, options, loggerFactory, timeProvider, configure: null)
    {
    }

    /// <summary>
    /// The constructor behind the others; <paramref name="configure"/> runs after the debug hooks and the limits are
    /// in place and before tracing starts (the DI builder's hooks and frame provider: see
    /// <c>RuntimeMemoryBuilderExtensions</c>), so that the tracer sits above every hook and starts with its provider.
    /// </summary>
    internal RuntimeMemory(IAllocatorProvider provider, RuntimeMemoryOptions? options, ILoggerFactory? loggerFactory, TimeProvider? timeProvider, Action<RuntimeMemory>? configure)
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

        _logger = loggerFactory?.CreateLogger(Diagnostics.RuntimeMemoryLog.Category);
        _time = timeProvider ?? TimeProvider.System;
        if (_logger is not null)
        {
            foreach (MemoryDomain domain in _domains)
            {
                domain.AttachLog(_logger, _time);
            }

            Diagnostics.RuntimeMemoryLog.AllocatorsConfigured(_logger, AllocatorName, Raw.DescribeChain(), Mem.DescribeChain(), Obj.DescribeChain());
        }

        if (options?.Limits is { } limits)
        {
            ApplyLimits(limits);
        }

        Tracer = new Tracing.MemoryTracer(this);
        _tracingOptions = options?.Tracing ?? new RuntimeMemoryTracingOptions();
        _leakLogger = loggerFactory?.CreateLogger("Runtime.Memory.Tracing");
        configure?.Invoke(this);
        if (_tracingOptions.Enabled)
        {
            Tracer.Start(_tracingOptions.Frames, _tracingOptions.SampleBytes); // above the debug hooks
        }
    }

    /// <summary>
    /// The runtime behind <paramref name="memory"/>, for the parts that reach into it (library routes, native
    /// extensions, metrics): only the runtime this library creates has the per-thread accounts they count in.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="memory"/> is another implementation (a hand-written fake).</exception>
    internal static RuntimeMemory Of(IRuntimeMemory memory, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(memory))] string? parameter = null)
    {
        ArgumentNullException.ThrowIfNull(memory, parameter);
        return memory as RuntimeMemory ?? throw new ArgumentException(
            $"This needs the runtime that AddRuntimeMemory or RuntimeMemory.Create made; {memory.GetType().FullName} is another IRuntimeMemory implementation.",
            parameter);
    }

    /// <summary>The per-thread accounting of the three domains (the tracer keeps its traced bytes in the same shards).</summary>
    internal MemoryAccounting Accounting { get; }

    private readonly RuntimeMemoryTracingOptions _tracingOptions;
    private readonly ILogger? _logger;
    private readonly TimeProvider _time;

    /// <summary>The clock the runtime's rate limits and timestamps use (a registered <see cref="TimeProvider"/>, or the system's).</summary>
    internal TimeProvider Time => _time;

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

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, LibraryAccount> _tags = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>
    /// The account of the native library tagged <paramref name="tag"/> (created on first use): what the library's
    /// route into this runtime holds, and its budget. Routes with the same tag share one account; tags match
    /// ignoring case, and the account keeps the spelling of its first use.
    /// </summary>
    /// <exception cref="InvalidOperationException">More than 29 distinct tags (the accounts a runtime keeps per thread).</exception>
    public LibraryAccount Tag(string tag)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(tag);
        if (_tags.TryGetValue(tag, out LibraryAccount? existing))
        {
            return existing;
        }

        lock (_tags)
        {
            if (_tags.TryGetValue(tag, out existing))
            {
                return existing;
            }

            int index = Accounting.NewTagAccount();
            if (index < 0)
            {
                throw new InvalidOperationException(
                    $"A runtime accounts at most {MemoryAccounting.MaxTags} library tags, and '{tag}' would be one more (tags so far: {string.Join(", ", _tags.Keys.Order(StringComparer.Ordinal))}). Route libraries that belong together under one tag.");
            }

            var account = new LibraryAccount(tag, Accounting, index);
            if (_logger is { } logger)
            {
                account.AttachLog(logger, _time);
            }

            _tags[tag] = account;
            return account;
        }
    }

    /// <summary>Logs that a route's native library is missing (event 4401) before the route throws the exception.</summary>
    internal void ReportBackendMissing(string library, DllNotFoundException ex)
    {
        if (_logger is { } logger)
        {
            Diagnostics.RuntimeMemoryLog.BackendMissing(logger, library, ex.Message);
        }
    }

    private readonly Lock _limitsLock = new();
    private IDisposable? _limitsSubscription;

    /// <summary>Keeps the configuration-change subscription that re-applies the limits; disposed with the runtime.</summary>
    internal void FollowLimits(IDisposable? subscription) => _limitsSubscription = subscription;

    /// <summary>
    /// A configuration change: applies its limits when <paramref name="failures"/> is empty; otherwise logs the problems
    /// (event 4303) and keeps the budgets as they are. Never throws: it runs on the configuration's change thread.
    /// </summary>
    internal void ApplyLimitsFromReload(RuntimeMemoryOptions options, IReadOnlyList<string> failures)
    {
        try
        {
            if (failures.Count != 0)
            {
                if (_logger is { } logger)
                {
                    Diagnostics.RuntimeMemoryLog.LimitChangeRejected(logger, string.Join(" ", failures));
                }

                return;
            }

            ApplyLimits(options.Limits);
        }
        catch (Exception ex)
        {
            if (_logger is { } logger)
            {
                Diagnostics.RuntimeMemoryLog.LimitChangeRejected(logger, ex.Message);
            }
        }
    }

    /// <summary>
    /// Sets every budget from <paramref name="limits"/> (<c>RuntimeMemory:Limits</c>): each domain's, and each tag's
    /// named there; a tag budget set earlier and no longer named is removed. DI calls this at start and on every valid
    /// configuration change; the options must be valid (<see cref="RuntimeMemoryOptionsValidator"/>).
    /// </summary>
    public void ApplyLimits(RuntimeMemoryLimitsOptions limits)
    {
        ArgumentNullException.ThrowIfNull(limits);
        lock (_limitsLock)
        {
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                this[kind].MaxBytes = limits[kind].MaxBytes;
            }

            foreach (LibraryAccount account in _tags.Values)
            {
                if (!limits.Tags.Keys.Contains(account.Tag, StringComparer.OrdinalIgnoreCase))
                {
                    account.MaxBytes = null;
                }
            }

            foreach ((string tag, RuntimeMemoryBudgetOptions budget) in limits.Tags)
            {
                Tag(tag).MaxBytes = budget.MaxBytes;
            }
        }
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
    /// Closes the three domains and releases what the runtime holds: the small-object allocators' arenas, the debug
    /// hooks' shadow map and quarantine, the tracer's tables. Arenas with live blocks stay mapped, as CPython leaves them
    /// at finalisation. Calling it again does nothing.
    /// </summary>
    /// <remarks>
    /// <para><b>After Dispose</b>, on every allocator: <c>Malloc</c>, <c>Calloc</c> and <c>Realloc</c> return null (a
    /// failed realloc leaves its block as it was), and <c>Free</c> does nothing: the block is left where it is, never
    /// touched, and its memory stays with the process. So an embedding host may shut an interpreter down after the
    /// runtime, freeing its blocks out of order, without a report or a crash. Changing a domain's chain throws
    /// <see cref="ObjectDisposedException"/>. The first call into each closed domain is logged (event 4502).</para>
    /// <para><b>Calls racing with Dispose</b> fail the same way: each domain call is counted in its thread's shard while
    /// it runs, and Dispose closes the domains, makes every thread's count visible with a process-wide barrier, and waits
    /// until no call is in flight before it releases anything. If a call does not finish within
    /// <see cref="DisposeDrainTimeout"/> (a user hook blocked), or Dispose is called from inside an allocator call of this
    /// runtime, nothing is released (event 4503): memory is left mapped rather than pulled from under a running call.</para>
    /// <para>A process-global library routed into this runtime (<see cref="Extensions.OpenSsl.OpenSslRouting"/>) is closed
    /// first, so it never calls into the disposed runtime; the blocks it still holds stay valid (they are live) and are
    /// left to the process's exit.</para>
    /// </remarks>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Action? close;
        lock (_processGlobalLock)
        {
            close = _processGlobalRoutes;
            _processGlobalRoutes = null;
        }

        close?.Invoke();
        _limitsSubscription?.Dispose();
        _metrics?.Dispose(); // before the state it reads goes away

        foreach (MemoryDomain domain in _domains)
        {
            domain.Close();
        }

        Interlocked.MemoryBarrierProcessWide(); // every thread's InCall store is now visible, or its next _top load sees the closed chain
        if (!Accounting.WaitForCallsToDrain(DisposeDrainTimeout))
        {
            Diagnostics.RuntimeMemoryLog.DisposeWithCallsInFlight(_logger,
                $"a call into a domain was still running after {DisposeDrainTimeout.TotalSeconds:0.#} s, or Dispose was called from inside one");
            return;
        }

        // Freed blocks still in the debug hooks' quarantine are checked and given back while the allocators below are
        // there; a write after free found now is reported, logged rather than thrown under Throw (Dispose does not throw).
        Debugger.FlushQuarantine(Debugger.OnViolation == ViolationAction.Throw ? ViolationAction.Log : null);

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

        Accounting.ReleaseContexts(); // the counters folded into the totals the statistics keep reporting

    }

    private int _disposed;

    /// <summary>How long <see cref="Dispose"/> waits for calls in flight on other threads before it gives up releasing memory.</summary>
    public static TimeSpan DisposeDrainTimeout { get; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Gives back what is held without need: the debug hooks' quarantine of freed blocks is flushed (every block is
    /// checked, and a write after free reported, see <see cref="MemoryDebugger.FlushQuarantine()"/>), then each domain's
    /// small-object allocator collects on the calling thread (<see cref="SmallObjectAllocator.Collect"/>).
    /// </summary>
    public void Collect()
    {
        Debugger.FlushQuarantine();
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            SmallObjects(kind)?.Collect();
        }
    }

    /// <inheritdoc/>
    public RuntimeMemoryStatistics GetStatistics() => GetStatistics(StatisticsParts.All);

    /// <summary>
    /// The snapshot with only <paramref name="parts"/> filled in (the rest empty: no chains, no small-object walk, no
    /// libraries, tracing off, no debug figures): the same code, so every reader agrees, at the cost of what it reads.
    /// </summary>
    internal RuntimeMemoryStatistics GetStatistics(StatisticsParts parts)
    {
        var domains = new DomainStatistics[_domains.Length];
        for (int i = 0; i < domains.Length; i++)
        {
            domains[i] = _domains[i].GetStatistics(parts);
        }

        var statistics = new RuntimeMemoryStatistics(AllocatorName, domains);
        if ((parts & StatisticsParts.Libraries) != 0)
        {
            statistics = statistics with { Libraries = Tags.Select(LibraryStatistics.Of).ToArray() };
        }

        if ((parts & StatisticsParts.Tracing) != 0 && Tracer.IsTracing)
        {
            (long traced, long tracedPeak) = Tracer.GetTracedMemory();
            statistics = statistics with
            {
                Tracing = new TracingStatistics(true, Tracer.TracebackLimit, Tracer.SampleBytes, Tracer.TracedBlocks, traced, tracedPeak, Tracer.TracingMemory, Tracer.TraceFailures),
            };
        }

        if ((parts & StatisticsParts.Debug) != 0)
        {
            MemoryDomainKind[] hooked = _domains.Where(d => d.DebugHook is not null).Select(d => d.Kind).ToArray();
            if (hooked.Length != 0 || Debugger.Violations != 0)
            {
                bool full = (parts & StatisticsParts.DebugBlocks) != 0;
                statistics = statistics with
                {
                    Debug = new DebugStatistics(hooked, Debugger.Violations, full ? Debugger.LiveBlocks : 0, full ? Debugger.ShadowBytes : 0)
                    {
                        QuarantinedBytes = Debugger.QuarantinedBytes,
                        QuarantinedBlocks = Debugger.QuarantinedBlocks,
                    },
                };
            }
        }

        return statistics;
    }
}
