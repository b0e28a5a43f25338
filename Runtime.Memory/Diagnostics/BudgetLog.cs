using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Runtime.Memory.Diagnostics;

/// <summary>
/// The log of one budget's refusal episodes: the first refusal of an episode is logged (event 4301), at most once per
/// <see cref="MinInterval"/>; episodes that start sooner are counted and the count goes with the next event.
/// </summary>
/// <remarks>Never throws: it is called from allocation paths, some of them under native code.</remarks>
public sealed class BudgetLog
{
    /// <summary>The shortest time between two events of one budget.</summary>
    public static readonly TimeSpan MinInterval = TimeSpan.FromSeconds(1);

    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private long _lastLogged = long.MinValue;
    private long _unlogged;

    internal BudgetLog(ILogger logger, TimeProvider time, string budget)
    {
        _logger = logger;
        _time = time;
        Budget = budget;
    }

    /// <summary>What the budget limits, as the event names it: <c>obj domain</c>, <c>library 'lua'</c>.</summary>
    public string Budget { get; }

    /// <summary>A refusal episode has started: log it unless the last event was under <see cref="MinInterval"/> ago.</summary>
    internal void EpisodeStarted(long liveBytes, long requestBytes, long limitBytes)
    {
        long now = _time.GetTimestamp();
        long last = Interlocked.Read(ref _lastLogged);
        bool due = last == long.MinValue || _time.GetElapsedTime(last, now) >= MinInterval;
        if (!due || Interlocked.CompareExchange(ref _lastLogged, now, last) != last)
        {
            Interlocked.Increment(ref _unlogged);
            return;
        }

        try
        {
            RuntimeMemoryLog.LimitReached(_logger, Budget, limitBytes, requestBytes, liveBytes, Interlocked.Exchange(ref _unlogged, 0));
        }
        catch (Exception ex)
        {
            Debug.WriteLine($"Runtime.Memory: a logger threw while logging a budget refusal: {ex}"); // never into the allocation path
        }
    }
}
