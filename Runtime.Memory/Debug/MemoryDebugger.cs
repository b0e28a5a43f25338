using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Runtime.Memory.Hosting;

namespace Runtime.Memory;

/// <summary>
/// The debug state of one runtime, shared by the debug hooks of its three domains: the registry of every block they
/// handed out, the call counter behind serial numbers, and the violation handler. Get it from
/// <see cref="RuntimeMemory.Debugger"/>; the hooks themselves are installed by a <c>*_debug</c> allocator name or by
/// <see cref="IRuntimeMemory.SetupDebugHooks"/>.
/// </summary>
/// <remarks>
/// <para><b>Cost.</b> Per allocation and per free: the allocator below, one registry operation (a compare-exchange on
/// one of 64 stripe locks and a hash probe), an atomic increment of the call counter (allocations only), and filling
/// the data with 0xCD (or 0xDD on free). No managed allocation. Per block: 32 bytes of guard bytes and serial number,
/// and a 40-byte registry record. See <c>docs/BENCHMARKS.md</c> for the measured ratio.</para>
/// <para><b>Reports</b> go to <see cref="OnViolation"/>; the report text is described on <see cref="MemoryViolation"/>.
/// Without a logger (a runtime created without DI) logged reports go to stderr.</para>
/// </remarks>
public sealed partial class MemoryDebugger : IDisposable
{
    /// <summary>Freed blocks each registry stripe remembers in guard-byte mode (64 stripes: 4,096 blocks).</summary>
    private const int FreedRecordsPerStripe = 64;

    /// <summary>Freed blocks each stripe keeps inaccessible in guard-page mode (64 stripes: a quarantine of 1,024 blocks).</summary>
    private const int QuarantinePerStripe = 16;

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
        Registry = new DebugBlockRegistry(GuardPages ? QuarantinePerStripe : FreedRecordsPerStripe);
    }

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

    /// <summary>Blocks allocated through the debug hooks and not yet freed, over all domains (leaked suspect blocks included).</summary>
    public long LiveBlocks => Registry.LiveBlocks;

    /// <summary>Debug malloc/calloc/realloc calls made so far: the serial number of the latest block.</summary>
    public ulong Calls => (ulong)Volatile.Read(ref _calls.Value);

    /// <summary>
    /// Freed blocks remembered, so that freeing one again is reported as a double free; in guard-page mode also the
    /// number of freed blocks kept inaccessible (the quarantine).
    /// </summary>
    public int FreedBlocksRemembered => Registry.FreedCapacity;

    /// <summary>Native bytes the block registry uses.</summary>
    public long RegistryBytes => Registry.BytesUsed;

    /// <summary>The block registry shared by the three hooks.</summary>
    internal DebugBlockRegistry Registry { get; }

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
    internal void Report(MemoryViolation violation)
    {
        Interlocked.Increment(ref _violations);
        _lastViolation = violation;
        ViolationAction action = _onViolation;
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
                    WriteToStderr(violation.Report);
                }

                return;

            default:
                // The report goes to stderr synchronously first: a logger may queue, and nothing runs after FailFast.
                WriteToStderr(violation.Report);
                if (_logger is not null)
                {
                    LogFatalViolation(_logger, violation.Kind, violation.Report);
                }

                Environment.FailFast($"RuntimeMemory debug hooks: {violation.Summary}");
                return;
        }
    }

    private static void WriteToStderr(string report)
    {
        try
        {
            Console.Error.Write(report);
            Console.Error.Flush();
        }
        catch (IOException)
        {
            // stderr closed: the violation is still counted and kept in LastViolation.
        }
    }

    [LoggerMessage(EventId = 4001, EventName = "MemoryViolation", Level = LogLevel.Error, Message = "Memory violation ({Kind}); the block is leaked, not freed.\n{Report}")]
    private static partial void LogViolation(ILogger logger, MemoryViolationKind kind, string report);

    [LoggerMessage(EventId = 4002, EventName = "FatalMemoryViolation", Level = LogLevel.Critical, Message = "Fatal memory violation ({Kind}); the process stops.\n{Report}")]
    private static partial void LogFatalViolation(ILogger logger, MemoryViolationKind kind, string report);

    /// <summary>
    /// Unmaps the quarantined guard pages and frees the registry. Blocks still live stay where they are; the hooks
    /// must not be used afterwards.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        foreach (BlockRecord record in Registry.TakeQuarantined())
        {
            GuardPageBlocks.Unmap(record);
        }

        Registry.Dispose();
    }

    /// <summary>A counter on its own cache line, so that it does not slow down its neighbours' readers.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 128)]
    private sealed class PaddedCounter
    {
        [FieldOffset(64)]
        public long Value;
    }
}
