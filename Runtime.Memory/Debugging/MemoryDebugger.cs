using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Runtime.Memory.Hosting;

namespace Runtime.Memory.Debugging;

/// <summary>
/// The debug state of one runtime, shared by the debug hooks of its three domains: the shadow map of every block they
/// handed out, the call counter behind serial numbers, and the violation handler. Get it from
/// <see cref="RuntimeMemory.Debugger"/>; the hooks themselves are installed by a <c>*_debug</c> allocator name or by
/// <see cref="IRuntimeMemory.SetupDebugHooks"/>.
/// </summary>
/// <remarks>
/// <para><b>Cost.</b> Per allocation: the allocator below, an atomic increment of the call counter, the 0xCD fill and
/// a shadow-map store. Per free: a shadow-map lookup and a byte compare-exchange, the checks, the 0xDD fill. No lock
/// and no managed allocation. Per block: 32 bytes of guard bytes and serial number; the shadow map adds 1/16 of the
/// address span that holds debug blocks. See <c>docs/BENCHMARKS.md</c> for the measured ratio.</para>
/// <para><b>Reports</b> go to <see cref="OnViolation"/>; the report text is described on <see cref="MemoryViolation"/>.
/// Without a logger (a runtime created without DI) logged reports go to stderr.</para>
/// </remarks>
public sealed partial class MemoryDebugger : IDisposable
{
    /// <summary>Freed blocks kept inaccessible in guard-page mode before their pages are unmapped.</summary>
    public const int QuarantineCapacity = 1024;

    private readonly Lock _quarantineLock = new();
    private readonly QuarantinedBlock[] _quarantine;
    private int _quarantineNext;
    private int _quarantineCount;
    private long _quarantineReleased;
    private readonly ILogger? _logger;
    private readonly PaddedCounter _calls = new();
    private long _violations;
    private volatile MemoryViolation? _lastViolation;
    private volatile ViolationAction _onViolation;
    private int _disposed;

    internal MemoryDebugger(RuntimeMemoryDebugOptions? options, ILogger? logger)
    {
        options ??= new RuntimeMemoryDebugOptions();
        _onViolation = options.OnViolation;
        GuardPages = options.GuardPages;
        _logger = logger;
        Shadow = new DebugShadowMap();
        _quarantine = GuardPages ? new QuarantinedBlock[QuarantineCapacity] : [];
        QuarantineBytes = options.QuarantineBytes;
    }

    /// <summary>
    /// The bound of each domain's quarantine of freed blocks, in bytes (data and guard bytes), fixed when the runtime is
    /// created (<c>RuntimeMemory:Debug:QuarantineBytes</c>); 0 when there is none. Not used with guard pages, whose
    /// freed blocks are kept inaccessible instead (<see cref="QuarantineCapacity"/>).
    /// </summary>
    public long QuarantineBytes { get; }

    /// <summary>Bytes of freed blocks held in the quarantines of all domains right now: live to the OS, dead to the
    /// program, and counted in no domain's live bytes or budget.</summary>
    public long QuarantinedBytes => Quarantined(null).Bytes;

    /// <summary>
    /// Checks every freed block in the quarantines of all domains and gives it back to the allocator below; a changed
    /// byte is reported as a <see cref="MemoryViolationKind.WriteAfterFree"/> under <see cref="OnViolation"/> (under
    /// <see cref="ViolationAction.Throw"/> every block is checked and freed first; the exception carries the first
    /// report and <see cref="Violations"/> counts them all). Returns the number of writes after free found. Also done by
    /// <see cref="RuntimeMemory.Collect"/> and when the runtime is disposed.
    /// </summary>
    public int FlushQuarantine() => FlushQuarantine(null);

    internal int FlushQuarantine(ViolationAction? action)
    {
        int found = 0;
        System.Runtime.ExceptionServices.ExceptionDispatchInfo? first = null;
        foreach (DebugHook hook in AllHooks())
        {
            try
            {
                found += hook.FlushQuarantine(action);
            }
            catch (MemoryViolationException ex)
            {
                first ??= System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(ex); // every hook is flushed first
            }
        }

        first?.Throw();
        return found;
    }

    /// <summary>The freed block at <paramref name="data"/> if one of the quarantines holds it (for a report: a scan).</summary>
    internal QuarantinedBlock? FindQuarantined(nuint data)
    {
        foreach (DebugHook hook in AllHooks())
        {
            if (hook.FreeQuarantine is { } quarantine && quarantine.TryFind(data, out QuarantinedBlock block))
            {
                return block;
            }
        }

        lock (_quarantineLock) // guard-page mode: the freed blocks kept inaccessible
        {
            for (int i = 0; i < _quarantineCount; i++)
            {
                if (_quarantine[i].Data == data)
                {
                    return _quarantine[i];
                }
            }
        }

        return null;
    }

    /// <summary>Reports each violation; under Throw, all are counted and the first is thrown after the last.</summary>
    internal void ReportAll(List<MemoryViolation> violations, ViolationAction? action)
    {
        MemoryViolationException? first = null;
        foreach (MemoryViolation violation in violations)
        {
            try
            {
                Report(violation, action ?? _onViolation);
            }
            catch (MemoryViolationException ex)
            {
                first ??= ex;
            }
        }

        if (first is not null)
        {
            throw first;
        }
    }

    /// <summary>The runtime's tracer while it traces (set by tracing when it starts): free tracebacks for the quarantine.</summary>
    internal Tracing.MemoryTracer? Tracer { get; set; }

    /// <summary>What happens when a misuse is found. Can be changed at any time.</summary>
    public ViolationAction OnViolation
    {
        get => _onViolation;
        set => _onViolation = Enum.IsDefined(value) ? value : throw new ArgumentOutOfRangeException(nameof(value), value, "Allowed values: FailFast, Throw, Log.");
    }

    /// <summary>Whether the hooks give each block its own pages and a guard page (fixed when the runtime is created).</summary>
    public bool GuardPages { get; }

    /// <summary>Misuses found so far.</summary>
    public long Violations => Interlocked.Read(ref _violations);

    /// <summary>The last misuse found, or <see langword="null"/>.</summary>
    public MemoryViolation? LastViolation => _lastViolation;

    /// <summary>
    /// Blocks allocated through the debug hooks and not yet freed, over all domains (leaked suspect blocks included).
    /// Counted from the shadow map when read: for diagnostics and tests, not for a hot loop.
    /// </summary>
    public long LiveBlocks => Shadow.CountLive();

    /// <summary>Debug malloc/calloc/realloc calls made so far: the serial number of the latest block.</summary>
    public ulong Calls => (ulong)Volatile.Read(ref _calls.Value);

    /// <summary>Freed blocks in the quarantine right now: in guard-page mode inaccessible and not yet unmapped, else
    /// filled with 0xDD and not yet given back (all domains).</summary>
    public int QuarantinedBlocks
    {
        get
        {
            int count = (int)Quarantined(null).Blocks;
            lock (_quarantineLock)
            {
                return count + _quarantineCount;
            }
        }
    }

    /// <summary>Freed guard-page blocks that have left the quarantine and been unmapped.</summary>
    public long QuarantineReleased => Interlocked.Read(ref _quarantineReleased);

    /// <summary>Native bytes of address space the shadow map uses (resident memory is less).</summary>
    public long ShadowBytes => Shadow.BytesUsed;

    /// <summary>The shadow map shared by the three hooks.</summary>
    internal DebugShadowMap Shadow { get; }

    private readonly DebugHook?[] _hooks = new DebugHook?[MemoryDomainKindExtensions.Count];

    /// <summary>The debug hook of each domain, so that a report about another domain's block sizes it with that domain's allocator.</summary>
    internal DebugHook? HookOf(MemoryDomainKind kind) => Volatile.Read(ref _hooks[(int)kind]);

    /// <summary>Records the hook a domain installed (the latest one, if the hooks were removed and set up again).</summary>
    internal void Register(DebugHook hook, MemoryDomainKind kind)
    {
        Volatile.Write(ref _hooks[(int)kind], hook);
        lock (_allHooks)
        {
            _allHooks.Add(hook); // a hook removed since may still hold quarantined blocks
        }
    }

    private readonly List<DebugHook> _allHooks = [];

    /// <summary>
    /// Bytes (data and guard bytes) and blocks held now in the quarantines of freed blocks of <paramref name="kind"/>'s
    /// hooks (all domains when null), including a hook removed since that still holds some; (0, 0) without the debug
    /// hooks. Guard-page mode keeps its freed blocks apart (<see cref="QuarantinedBlocks"/>).
    /// </summary>
    internal (long Bytes, long Blocks) Quarantined(MemoryDomainKind? kind)
    {
        long bytes = 0;
        long blocks = 0;
        lock (_allHooks)
        {
            foreach (DebugHook hook in _allHooks)
            {
                if ((kind is null || hook.DomainKind == kind) && hook.FreeQuarantine is { } quarantine)
                {
                    bytes += quarantine.Bytes;
                    blocks += quarantine.Count;
                }
            }
        }

        return (bytes, blocks);
    }

    private DebugHook[] AllHooks()
    {
        lock (_allHooks)
        {
            return [.. _allHooks];
        }
    }

    /// <summary>
    /// Keeps a retired guard-page block inaccessible until <see cref="QuarantineCapacity"/> newer ones have been
    /// freed, then unmaps it. A use after free faults meanwhile; a second free is reported from the shadow map.
    /// </summary>
    internal void Quarantine(in QuarantinedBlock block)
    {
        QuarantinedBlock evicted = default;
        lock (_quarantineLock)
        {
            if (_quarantineCount == QuarantineCapacity)
            {
                evicted = _quarantine[_quarantineNext];
            }
            else
            {
                _quarantineCount++;
            }

            _quarantine[_quarantineNext] = block;
            _quarantineNext = (_quarantineNext + 1) % QuarantineCapacity;
        }

        if (evicted.Data != 0)
        {
            GuardPageBlocks.Unmap(evicted.Data, evicted.Size);
            Interlocked.Increment(ref _quarantineReleased);
        }
    }

    /// <summary>
    /// Where a block was allocated, as report lines, when allocation tracing knows it; set by tracing when it starts.
    /// </summary>
    internal Func<nuint, string?>? TracebackOf { get; set; }

    /// <summary>The serial number of a new block.</summary>
    internal ulong NextSerial() => (ulong)Interlocked.Increment(ref _calls.Value);

    /// <summary>
    /// Hands a violation to the configured action. Under <see cref="ViolationAction.Throw"/> it throws, unless the
    /// call came from native code (<see cref="NativeCallScope"/>), where it logs instead.
    /// </summary>
    internal void Report(MemoryViolation violation) => Report(violation, _onViolation);

    /// <summary>
    /// Hands memory corruption a built-in allocator found (or a fault it raised) to the configured action when the
    /// debug hooks are installed on <paramref name="domain"/>'s domain, and stops the process otherwise: corruption is
    /// never turned into a null return, and only a user who set the hooks up has chosen what happens instead.
    /// </summary>
    internal void ReportCorruption(MemoryViolation violation, MemoryDomain? domain) =>
        Report(violation, domain?.DebugHook is not null ? _onViolation : ViolationAction.FailFast);

    /// <summary>Reports a corruption found by an allocator that no runtime owns: the report goes to stderr and the process stops.</summary>
    internal static void FailFastOnCorruption(MemoryViolation violation)
    {
        Diagnostics.RuntimeMemoryLog.WriteToStderr(violation.Report);
        Environment.FailFast($"RuntimeMemory: {violation.Summary}");
    }

    private void Report(MemoryViolation violation, ViolationAction action)
    {
        Interlocked.Increment(ref _violations);
        _lastViolation = violation;
        if (action == ViolationAction.Throw && NativeCallScope.IsActive)
        {
            action = ViolationAction.Log;
        }

        switch (action)
        {
            case ViolationAction.Throw:
                throw new MemoryViolationException(violation);

            case ViolationAction.Log:
                if (_logger is not null)
                {
                    LogViolation(_logger, violation.Kind, violation.Report);
                }
                else
                {
                    Diagnostics.RuntimeMemoryLog.WriteToStderr(violation.Report);
                }

                return;

            default:
                // The report goes to stderr synchronously first: a logger may queue, and nothing runs after FailFast.
                Diagnostics.RuntimeMemoryLog.WriteToStderr(violation.Report);
                if (_logger is not null)
                {
                    LogFatalViolation(_logger, violation.Kind, violation.Report);
                }

                Environment.FailFast(violation.Kind is MemoryViolationKind.HeapCorruption or MemoryViolationKind.AllocatorFault
                    ? $"RuntimeMemory: {violation.Summary}"
                    : $"RuntimeMemory debug hooks: {violation.Summary}");
                return;
        }
    }

    [LoggerMessage(EventId = 4001, EventName = "MemoryViolation", Level = LogLevel.Error, Message = "Memory violation ({Kind}); the block is leaked, not freed.\n{Report}")]
    private static partial void LogViolation(ILogger logger, MemoryViolationKind kind, string report);

    [LoggerMessage(EventId = 4002, EventName = "FatalMemoryViolation", Level = LogLevel.Critical, Message = "Fatal memory violation ({Kind}); the process stops.\n{Report}")]
    private static partial void LogFatalViolation(ILogger logger, MemoryViolationKind kind, string report);

    /// <summary>
    /// Unmaps the quarantined guard pages and the shadow map. Blocks still live stay where they are; the hooks
    /// must not be used afterwards.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        lock (_quarantineLock)
        {
            for (int i = 0; i < _quarantineCount; i++)
            {
                GuardPageBlocks.Unmap(_quarantine[i].Data, _quarantine[i].Size);
            }

            _quarantineCount = 0;
        }

        Shadow.Dispose();
    }

    /// <summary>A counter on its own cache line, so that it does not slow down its neighbours' readers.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private sealed class PaddedCounter
    {
        [FieldOffset(64)]
        public long Value;
    }
}
