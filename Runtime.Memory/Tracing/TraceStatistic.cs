using System.Globalization;
using System.Text.RegularExpressions;

namespace Runtime.Memory.Tracing;

/// <summary>Blocks grouped under one key: their total size and count (tracemalloc's <c>Statistic</c>).</summary>
public sealed record TraceStatistic(Traceback Traceback, long Size, long Count)
{
    /// <summary><c>file:line: size=4855 KiB, count=39328, average=126 B</c>, tracemalloc's line.</summary>
    public override string ToString() =>
        $"{Traceback}: size={TraceFormat.Size(Size)}, count={Count}" + (Count > 0 ? $", average={TraceFormat.Size((double)Size / Count)}" : "");
}
