using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Runtime.Memory.Diagnostics;

/// <summary>
/// Every event the memory service logs, with its id: one place to read what an operator can filter on.
/// </summary>
/// <remarks>
/// <code>
///   id    name                     level        category                  when
///   4001  MemoryViolation          Error        Runtime.Memory.Debug      a debug hook found a misuse (the block is leaked)
///   4002  FatalMemoryViolation     Critical     Runtime.Memory.Debug      a misuse under OnViolation=FailFast
///   4101  LeakReport               Warning      Runtime.Memory.Tracing    traced blocks live at dispose (LeakReportOnDispose)
///   4201  AllocatorsConfigured     Information  Runtime.Memory            the service started: the chain of every domain
///   4202  AllocatorReplaced        Information  Runtime.Memory            a domain's whole chain was replaced
///   4203  HookInstalled            Information  Runtime.Memory            a hook was linked on top of a domain's chain
///   4204  HookRemoved              Information  Runtime.Memory            a hook was unlinked
///   4301  LimitReached             Warning      Runtime.Memory            a budget refused an allocation (once per episode, at most 1/s)
///   4302  LimitChanged             Information  Runtime.Memory            a budget was set, changed or removed
///   4303  LimitChangeRejected      Error        Runtime.Memory            a configuration reload had invalid limits; the old ones stay
///   4401  BackendMissing           Error        Runtime.Memory            a native library a route needs could not be loaded
///   4501  AllocatorFaulted         Error        Runtime.Memory            a user allocator or hook threw (once per allocator; the call got null)
///   4502  UsedAfterDispose         Warning      Runtime.Memory            a domain was called after its runtime was disposed (once per domain)
///   4503  DisposeWithCallsInFlight Error        Runtime.Memory            Dispose could not wait out the calls in flight: nothing was released
/// </code>
/// Structured fields are named as in the messages (<c>Domain</c>, <c>Chain</c>, <c>Hook</c>, <c>Budget</c>,
/// <c>LimitBytes</c>, …), so a log pipeline can filter on them.
/// </remarks>
public static partial class RuntimeMemoryLog
{
    /// <summary>The category of the service's own events (the debug hooks and the tracer log under sub-categories).</summary>
    public const string Category = "Runtime.Memory";

    [LoggerMessage(EventId = 4501, EventName = "AllocatorFaulted", Level = LogLevel.Error,
        Message = "Allocator '{Allocator}' of the {Domain} domain threw {Exception} ({Detail}); the call returned null. Allocators must return null instead of throwing. Further faults of this allocator are counted (Failures, LastFault) but not logged.")]
    private static partial void LogAllocatorFaulted(ILogger logger, string allocator, string domain, string exception, string detail, Exception fault);

    /// <summary>A user allocator's first fault: logged, or written to stderr without a logger.</summary>
    internal static void AllocatorFaulted(ILogger? logger, string allocator, string domain, string exception, string detail, Exception fault)
    {
        if (logger is not null)
        {
            LogAllocatorFaulted(logger, allocator, domain, exception, detail, fault);
        }
        else
        {
            WriteToStderr($"RuntimeMemory: allocator '{allocator}' of the {domain} domain threw {exception} ({detail}); the call returned null (logged once per allocator).\n");
        }
    }

    [LoggerMessage(EventId = 4502, EventName = "UsedAfterDispose", Level = LogLevel.Warning,
        Message = "The {Domain} domain was called ({Operation} 0x{Address:x}) after its runtime was disposed: allocations return null and frees do nothing (the block is left untouched). Logged once per domain.")]
    private static partial void LogUsedAfterDispose(ILogger logger, string domain, string operation, nuint address);

    /// <summary>The first call into a closed domain: logged when there is a logger (it is documented behaviour, not a fault).</summary>
    internal static void UsedAfterDispose(ILogger? logger, string domain, string operation, nuint address)
    {
        if (logger is not null)
        {
            LogUsedAfterDispose(logger, domain, operation, address);
        }
    }

    [LoggerMessage(EventId = 4503, EventName = "DisposeWithCallsInFlight", Level = LogLevel.Error,
        Message = "Dispose: {Reason}; the runtime's memory (arenas, debug and tracing tables) is left mapped rather than released under a running call.")]
    private static partial void LogDisposeWithCallsInFlight(ILogger logger, string reason);

    /// <summary>Dispose could not release the runtime's memory: logged, or written to stderr without a logger.</summary>
    internal static void DisposeWithCallsInFlight(ILogger? logger, string reason)
    {
        if (logger is not null)
        {
            LogDisposeWithCallsInFlight(logger, reason);
        }
        else
        {
            WriteToStderr($"RuntimeMemory: Dispose: {reason}; the runtime's memory is left mapped rather than released under a running call.\n");
        }
    }

    /// <summary>
    /// Writes <paramref name="text"/> to stderr at once (the events of a runtime without a logger, and every report
    /// before a FailFast, after which nothing runs): never throws.
    /// </summary>
    internal static void WriteToStderr(string text)
    {
        try
        {
            Console.Error.Write(text);
            Console.Error.Flush();
        }
        catch (IOException)
        {
            // stderr closed: what was to be written is still counted (violations, failures, LastFault).
        }
    }

    [LoggerMessage(EventId = 4201, EventName = "AllocatorsConfigured", Level = LogLevel.Information,
        Message = "Memory service started with allocator '{Allocator}': raw {RawChain}, mem {MemChain}, obj {ObjChain}.")]
    internal static partial void AllocatorsConfigured(ILogger logger, string allocator, string rawChain, string memChain, string objChain);

    [LoggerMessage(EventId = 4202, EventName = "AllocatorReplaced", Level = LogLevel.Information,
        Message = "The {Domain} domain's allocator was replaced: {PreviousChain} -> {Chain}.")]
    internal static partial void AllocatorReplaced(ILogger logger, string domain, string previousChain, string chain);

    [LoggerMessage(EventId = 4203, EventName = "HookInstalled", Level = LogLevel.Information,
        Message = "Hook '{Hook}' installed on the {Domain} domain: {Chain}.")]
    internal static partial void HookInstalled(ILogger logger, string hook, string domain, string chain);

    [LoggerMessage(EventId = 4204, EventName = "HookRemoved", Level = LogLevel.Information,
        Message = "Hook '{Hook}' removed from the {Domain} domain: {Chain}.")]
    internal static partial void HookRemoved(ILogger logger, string hook, string domain, string chain);

    [LoggerMessage(EventId = 4301, EventName = "LimitReached", Level = LogLevel.Warning,
        Message = "The {Budget} budget of {LimitBytes} bytes refused {RequestBytes} more bytes with {LiveBytes} bytes live; allocations there return null until memory is freed. Episodes not logged since the last event (at most one per second): {UnloggedEpisodes}.")]
    internal static partial void LimitReached(ILogger logger, string budget, long limitBytes, long requestBytes, long liveBytes, long unloggedEpisodes);

    [LoggerMessage(EventId = 4302, EventName = "LimitChanged", Level = LogLevel.Information,
        Message = "The {Budget} budget changed: {PreviousLimit} -> {Limit}.")]
    internal static partial void LimitChanged(ILogger logger, string budget, string previousLimit, string limit);

    [LoggerMessage(EventId = 4303, EventName = "LimitChangeRejected", Level = LogLevel.Error,
        Message = "A configuration change was not applied to the memory budgets, which stay as they were: {Problems}")]
    internal static partial void LimitChangeRejected(ILogger logger, string problems);

    [LoggerMessage(EventId = 4401, EventName = "BackendMissing", Level = LogLevel.Error,
        Message = "The {Library} backend is not available: {Reason}")]
    internal static partial void BackendMissing(ILogger logger, string library, string reason);

    /// <summary>A budget as the log and the reports write it: its byte count, or <c>none</c>.</summary>
    internal static string DescribeLimit(long limit) =>
        limit == Budget.None ? "none" : limit.ToString("N0", System.Globalization.CultureInfo.InvariantCulture) + " bytes";

    /// <summary>Logs event 4302 when <paramref name="limit"/> differs from <paramref name="previous"/> and there is a logger.</summary>
    internal static void LimitChangedIf(ILogger? logger, string budget, long previous, long limit)
    {
        if (previous != limit && logger is not null)
        {
            LimitChanged(logger, budget, DescribeLimit(previous), DescribeLimit(limit));
        }
    }
}

/// <summary>How a budget is held: a limit in live bytes, <see cref="None"/> for no budget; and its public form, <c>MaxBytes</c>.</summary>
internal static class Budget
{
    /// <summary>No budget: every growth compares at or below it.</summary>
    public const long None = long.MaxValue;

    /// <summary>The limit of a <c>MaxBytes</c> value (null: <see cref="None"/>).</summary>
    /// <exception cref="ArgumentOutOfRangeException">A negative value.</exception>
    public static long FromMaxBytes(long? maxBytes) => maxBytes switch
    {
        null => None,
        < 0 => throw new ArgumentOutOfRangeException("value", maxBytes, "A budget is a number of bytes, 0 or more (null: no budget)."),
        { } bytes => bytes,
    };

    /// <summary>The <c>MaxBytes</c> value of a limit (<see cref="None"/>: null).</summary>
    public static long? ToMaxBytes(long limit) => limit == None ? null : limit;
}
