using System.Globalization;
using System.Text.RegularExpressions;

namespace Runtime.Memory.Tracing;

/// <summary>One traced block in a snapshot: its trace domain, size, traceback, and how many blocks it stands for (1
/// when tracing exactly; more when it was sampled, with <see cref="Size"/> scaled the same way).</summary>
public readonly record struct Trace(uint Domain, long Size, Traceback Traceback, long Count = 1);

/// <summary>How statistics group traces (tracemalloc's <c>key_type</c>).</summary>
public enum TraceGrouping
{
    /// <summary>By the file of the most recent frame (<c>'filename'</c>).</summary>
    File,

    /// <summary>By file and line of the most recent frame (<c>'lineno'</c>).</summary>
    Line,

    /// <summary>By the whole traceback (<c>'traceback'</c>).</summary>
    Traceback,
}

/// <summary>Blocks grouped under one key: their total size and count (tracemalloc's <c>Statistic</c>).</summary>
public sealed record TraceStatistic(Traceback Traceback, long Size, long Count)
{
    /// <summary><c>file:line: size=4855 KiB, count=39328, average=126 B</c>, tracemalloc's line.</summary>
    public override string ToString() =>
        $"{Traceback}: size={TraceFormat.Size(Size)}, count={Count}" + (Count > 0 ? $", average={TraceFormat.Size((double)Size / Count)}" : "");
}

/// <summary>One key's change between two snapshots (tracemalloc's <c>StatisticDiff</c>).</summary>
public sealed record TraceStatisticDiff(Traceback Traceback, long Size, long SizeDiff, long Count, long CountDiff)
{
    /// <summary><c>file:line: size=10 KiB (+10 KiB), count=5 (+5), average=2048 B</c>, tracemalloc's line.</summary>
    public override string ToString() =>
        $"{Traceback}: size={TraceFormat.Size(Size)} ({TraceFormat.Size(SizeDiff, sign: true)}), count={Count} ({CountDiff.ToString("+0;-0;+0", CultureInfo.InvariantCulture)})"
        + (Count > 0 ? $", average={TraceFormat.Size((double)Size / Count)}" : "");
}

/// <summary>
/// A filter on traces (tracemalloc's <c>Filter</c>): a file-name pattern (<c>*</c>, <c>?</c> and <c>[...]</c>, as
/// fnmatch), optionally a line, optionally a trace domain. An inclusive filter keeps the traces it matches, an
/// exclusive one drops them. Matching looks at the most recent frame, or at every frame with <see cref="AllFrames"/>.
/// </summary>
public sealed record TraceFilter(bool Inclusive, string FilePattern, int? Line = null, bool AllFrames = false, uint? Domain = null)
{
    private readonly Regex _pattern = Glob(FilePattern);

    private static Regex Glob(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        var regex = new System.Text.StringBuilder("^");
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            switch (c)
            {
                case '*': regex.Append(".*"); break;
                case '?': regex.Append('.'); break;
                case '[':
                    // As fnmatch.translate: a '!' first negates, and a ']' first (after it) belongs to the set.
                    int j = i + 1;
                    j += j < pattern.Length && pattern[j] == '!' ? 1 : 0;
                    j += j < pattern.Length && pattern[j] == ']' ? 1 : 0;
                    int close = j < pattern.Length ? pattern.IndexOf(']', j) : -1;
                    if (close < 0)
                    {
                        regex.Append(@"\[");
                        break;
                    }

                    string set = pattern[(i + 1)..close];
                    bool negate = set.StartsWith('!');
                    string members = (negate ? set[1..] : set).Replace(@"\", @"\\").Replace("[", @"\[").Replace("]", @"\]").Replace("^", @"\^");
                    regex.Append(negate ? "[^" : "[").Append(members).Append(']');
                    i = close;
                    break;
                default: regex.Append(Regex.Escape(c.ToString())); break;
            }
        }

        return new Regex(regex.Append('$').ToString(), RegexOptions.CultureInvariant | RegexOptions.Singleline);
    }

    private bool MatchesFrame(Frame frame) => _pattern.IsMatch(frame.File) && (Line is not int line || frame.Line == line);

    /// <summary>Whether the filter lets <paramref name="trace"/> through (tracemalloc's <c>Filter._match</c>).</summary>
    public bool Match(in Trace trace)
    {
        bool result = AllFrames
            ? trace.Traceback.Frames.Any(MatchesFrame) == Inclusive
            : MatchesFrame(trace.Traceback.MostRecent) == Inclusive;
        if (Domain is uint domain)
        {
            return Inclusive ? result && trace.Domain == domain : result || trace.Domain != domain;
        }

        return result;
    }
}

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

/// <summary>tracemalloc's size formatting (<c>_format_size</c>): B, KiB, MiB, GiB, TiB.</summary>
public static class TraceFormat
{
    private static readonly string[] Units = ["B", "KiB", "MiB", "GiB", "TiB"];

    /// <summary><paramref name="size"/> as tracemalloc prints it: <c>126 B</c>, <c>12.5 KiB</c>, <c>4855 KiB</c>; <c>+</c> or <c>-</c> first with <paramref name="sign"/>.</summary>
    public static string Size(double size, bool sign = false)
    {
        foreach (string unit in Units)
        {
            if (Math.Abs(size) < 100 && unit != "B")
            {
                return Fixed(size, 1, sign) + " " + unit;
            }

            if (Math.Abs(size) < 10 * 1024 || unit == "TiB")
            {
                return Fixed(size, 0, sign) + " " + unit;
            }

            size /= 1024;
        }

        throw new InvalidOperationException("unreachable: TiB ends the loop");
    }

    private static string Fixed(double value, int digits, bool sign)
    {
        double rounded = Math.Round(value, digits, MidpointRounding.ToEven); // printf's rounding of exact halves
        string text = rounded.ToString("F" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return sign && rounded >= 0 && !text.StartsWith('-') ? "+" + text : text;
    }
}
