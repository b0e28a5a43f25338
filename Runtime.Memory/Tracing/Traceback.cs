namespace Runtime.Memory.Tracing;

/// <summary>
/// Where a traced block was allocated: up to the tracer's frame limit of the caller's frames, interned (one instance
/// per distinct traceback, shared by every trace that has it). <see cref="Frames"/> runs from the oldest frame to the
/// most recent, as tracemalloc's Traceback since Python 3.7.
/// </summary>
public sealed class Traceback : IEquatable<Traceback>, IComparable<Traceback>
{
    private readonly Frame[] _frames; // oldest first
    private readonly int _hash;

    /// <summary>A traceback of <paramref name="oldestFirst"/> (at least one frame), from a stack <paramref name="totalFrames"/>
    /// deep, or at least that deep when <paramref name="totalFramesIsLowerBound"/>.</summary>
    public Traceback(IReadOnlyList<Frame> oldestFirst, int? totalFrames = null, bool totalFramesIsLowerBound = false)
    {
        ArgumentNullException.ThrowIfNull(oldestFirst);
        _frames = oldestFirst.Count == 0 ? [Frame.Unknown] : [.. oldestFirst];
        TotalFrames = Math.Max(totalFrames ?? _frames.Length, _frames.Length);
        TotalFramesIsLowerBound = totalFramesIsLowerBound;
        var hash = new HashCode();
        foreach (Frame frame in _frames)
        {
            hash.Add(frame);
        }

        hash.Add(TotalFrames);
        hash.Add(TotalFramesIsLowerBound);
        _hash = hash.ToHashCode();
    }

    /// <summary>The frames, oldest first.</summary>
    public IReadOnlyList<Frame> Frames => _frames;

    /// <summary>The frame that made the allocation.</summary>
    public Frame MostRecent => _frames[^1];

    /// <summary>How deep the stack was before it was cut to the tracer's limit (tracemalloc's <c>total_nframe</c>); a
    /// lower bound when <see cref="TotalFramesIsLowerBound"/>.</summary>
    /// <remarks>The frame provider examines at most the frames kept plus <see cref="IFrameProvider.Lookahead"/> levels
    /// (and one more to see whether the stack goes on), so that a traced allocation costs the same at any depth. The
    /// figure is exact for a stack up to that deep; a deeper stack reports frames kept + <see cref="IFrameProvider.Lookahead"/>
    /// + 1 with <see cref="TotalFramesIsLowerBound"/> set: "at least that many". (tracemalloc walks every frame and caps
    /// the count at 65,535.)</remarks>
    public int TotalFrames { get; }

    /// <summary>Whether the stack was deeper than the frame provider looked: it had at least <see cref="TotalFrames"/>
    /// frames, not exactly that many (see <see cref="TotalFrames"/>).</summary>
    public bool TotalFramesIsLowerBound { get; }

    /// <summary><see cref="TotalFrames"/> as text: <c>18</c>, or <c>18+</c> when it is a lower bound.</summary>
    public string TotalFramesText => TotalFramesIsLowerBound
        ? TotalFrames.ToString(System.Globalization.CultureInfo.InvariantCulture) + "+"
        : TotalFrames.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>
    /// The traceback as lines, oldest first unless <paramref name="mostRecentFirst"/>: <c>  File "x.lua", line 3</c>, and
    /// <c>    in f</c> when the function is known; at most <paramref name="limit"/> frames (the most recent ones).
    /// </summary>
    public IReadOnlyList<string> Format(int? limit = null, bool mostRecentFirst = false)
    {
        IEnumerable<Frame> frames = _frames;
        if (limit is int n && n >= 0 && n < _frames.Length)
        {
            frames = _frames[^n..]; // the n most recent, as tracemalloc's format(limit)
        }
        else if (limit is int m && m < 0 && -m < _frames.Length)
        {
            frames = _frames[..-m]; // a negative limit keeps the oldest frames, as tracemalloc's
        }

        if (mostRecentFirst)
        {
            frames = frames.Reverse();
        }

        var lines = new List<string>();
        foreach (Frame frame in frames)
        {
            lines.Add($"  File \"{frame.File}\", line {frame.Line}");
            if (frame.Function is { } function)
            {
                lines.Add($"    in {function}");
            }
        }

        return lines;
    }

    /// <summary>The oldest frame, as tracemalloc prints a traceback in a statistic line.</summary>
    public override string ToString() => _frames[0].ToString();

    /// <inheritdoc/>
    /// <remarks>Equal frames from stacks of different depths are different tracebacks, as in CPython's table.</remarks>
    public bool Equals(Traceback? other) =>
        other is not null && (ReferenceEquals(this, other)
            || (_hash == other._hash && TotalFrames == other.TotalFrames
                && TotalFramesIsLowerBound == other.TotalFramesIsLowerBound && _frames.AsSpan().SequenceEqual(other._frames)));

    /// <inheritdoc/>
    public override bool Equals(object? obj) => Equals(obj as Traceback);

    /// <inheritdoc/>
    public override int GetHashCode() => _hash;

    /// <summary>Orders by frames, oldest first (file ordinal, then line), then by length: the last key of tracemalloc's sorts.</summary>
    public int CompareTo(Traceback? other)
    {
        if (other is null)
        {
            return 1;
        }

        int n = Math.Min(_frames.Length, other._frames.Length);
        for (int i = 0; i < n; i++)
        {
            int c = string.CompareOrdinal(_frames[i].File, other._frames[i].File);
            if (c == 0)
            {
                c = _frames[i].Line.CompareTo(other._frames[i].Line);
            }

            if (c != 0)
            {
                return c;
            }
        }

        return _frames.Length.CompareTo(other._frames.Length);
    }
}
