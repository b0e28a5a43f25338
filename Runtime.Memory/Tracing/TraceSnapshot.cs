using System.Globalization;
using System.Text.RegularExpressions;

namespace Runtime.Memory.Tracing;

/// <summary>
/// An immutable set of traces taken by <see cref="MemoryTracer.TakeSnapshot"/>, or loaded from a file: statistics,
/// comparison with an older snapshot, filtering, and a dump to a file.
/// </summary>
public sealed partial class TraceSnapshot
{
    private readonly Trace[] _traces;

    /// <summary>A snapshot of <paramref name="traces"/>, taken with <paramref name="tracebackLimit"/> frames per traceback.</summary>
    public TraceSnapshot(IEnumerable<Trace> traces, int tracebackLimit, long sampleBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(traces);
        _traces = [.. traces];
        TracebackLimit = tracebackLimit;
        SampleBytes = sampleBytes;
    }

    /// <summary>The traces, in no particular order.</summary>
    public IReadOnlyList<Trace> Traces => _traces;

    /// <summary>The frames per traceback the tracer kept.</summary>
    public int TracebackLimit { get; }

    /// <summary>The sampling interval the traces were taken with (0: exact).</summary>
    public long SampleBytes { get; }

    /// <summary>The traces the filters let through (tracemalloc's <c>filter_traces</c>): a trace is kept if any
    /// inclusive filter matches it (or there is none) and no exclusive filter drops it.</summary>
    public TraceSnapshot Filter(IEnumerable<TraceFilter> filters)
    {
        ArgumentNullException.ThrowIfNull(filters);
        TraceFilter[] include = filters.Where(f => f.Inclusive).ToArray();
        TraceFilter[] exclude = filters.Where(f => !f.Inclusive).ToArray();
        return new TraceSnapshot(
            _traces.Where(t => (include.Length == 0 || include.Any(f => f.Match(t))) && exclude.All(f => f.Match(t))),
            TracebackLimit,
            SampleBytes);
    }

    /// <summary>
    /// Statistics grouped by <paramref name="grouping"/>, largest first (by size, then count, then traceback). With
    /// <paramref name="cumulative"/>, every frame of a traceback counts its block, not only the most recent.
    /// </summary>
    /// <exception cref="ArgumentException">Cumulative statistics grouped by whole traceback.</exception>
    public IReadOnlyList<TraceStatistic> Statistics(TraceGrouping grouping, bool cumulative = false) =>
        Group(grouping, cumulative).Values
            .Select(s => new TraceStatistic(s.Key, s.Size, s.Count))
            .OrderByDescending(s => s.Size).ThenByDescending(s => s.Count).ThenByDescending(s => s.Traceback)
            .ToArray();

    /// <summary>
    /// How each key changed since <paramref name="old"/> (tracemalloc's <c>compare_to</c>), ordered by the size of the
    /// change, then size, then the count change, count and traceback, all largest first. A key only in the old snapshot
    /// appears with size and count 0.
    /// </summary>
    public IReadOnlyList<TraceStatisticDiff> CompareTo(TraceSnapshot old, TraceGrouping grouping, bool cumulative = false)
    {
        ArgumentNullException.ThrowIfNull(old);
        Dictionary<Traceback, Accumulator> now = Group(grouping, cumulative);
        Dictionary<Traceback, Accumulator> before = old.Group(grouping, cumulative);
        var diffs = new List<TraceStatisticDiff>();
        foreach ((Traceback key, Accumulator stat) in now)
        {
            before.Remove(key, out Accumulator? previous);
            diffs.Add(new TraceStatisticDiff(key, stat.Size, stat.Size - (previous?.Size ?? 0), stat.Count, stat.Count - (previous?.Count ?? 0)));
        }

        foreach ((Traceback key, Accumulator stat) in before)
        {
            diffs.Add(new TraceStatisticDiff(key, 0, -stat.Size, 0, -stat.Count));
        }

        return diffs
            .OrderByDescending(d => Math.Abs(d.SizeDiff)).ThenByDescending(d => d.Size)
            .ThenByDescending(d => Math.Abs(d.CountDiff)).ThenByDescending(d => d.Count).ThenByDescending(d => d.Traceback)
            .ToArray();
    }

    /// <summary>The total size of the traces (estimated when sampled).</summary>
    public long TotalSize => _traces.Sum(t => t.Size);

    /// <summary>The number of blocks the traces stand for.</summary>
    public long TotalCount => _traces.Sum(t => t.Count);

    private sealed class Accumulator(Traceback key)
    {
        public readonly Traceback Key = key;
        public long Size;
        public long Count;
    }

    private Dictionary<Traceback, Accumulator> Group(TraceGrouping grouping, bool cumulative)
    {
        if (!Enum.IsDefined(grouping))
        {
            throw new ArgumentOutOfRangeException(nameof(grouping), grouping, "unknown grouping: use File, Line or Traceback");
        }

        if (cumulative && grouping == TraceGrouping.Traceback)
        {
            throw new ArgumentException("cumulative statistics cannot be grouped by whole traceback", nameof(cumulative));
        }

        var keys = new Dictionary<Frame, Traceback>();
        var stats = new Dictionary<Traceback, Accumulator>();
        void Add(Traceback key, in Trace trace)
        {
            if (!stats.TryGetValue(key, out Accumulator? stat))
            {
                stats[key] = stat = new Accumulator(key);
            }

            stat.Size += trace.Size;
            stat.Count += trace.Count;
        }

        Traceback KeyOf(Frame frame)
        {
            var location = new Frame(frame.File, frame.Line);
            if (!keys.TryGetValue(location, out Traceback? key))
            {
                keys[location] = key = new Traceback([grouping == TraceGrouping.File ? new Frame(frame.File, 0) : location]);
            }

            return key;
        }

        foreach (Trace trace in _traces)
        {
            if (grouping == TraceGrouping.Traceback)
            {
                Add(trace.Traceback, trace);
            }
            else if (!cumulative)
            {
                Add(KeyOf(trace.Traceback.MostRecent), trace);
            }
            else
            {
                foreach (Frame frame in trace.Traceback.Frames)
                {
                    Add(KeyOf(frame), trace); // tracemalloc counts a block once per frame
                }
            }
        }

        return stats;
    }
}
