using System.Globalization;
using System.Text.RegularExpressions;

namespace Runtime.Memory.Tracing;

/// <summary>One key's change between two snapshots (tracemalloc's <c>StatisticDiff</c>).</summary>
public sealed record TraceStatisticDiff(Traceback Traceback, long Size, long SizeDiff, long Count, long CountDiff)
{
    /// <summary><c>file:line: size=10 KiB (+10 KiB), count=5 (+5), average=2048 B</c>, tracemalloc's line.</summary>
    public override string ToString() =>
        $"{Traceback}: size={TraceFormat.Size(Size)} ({TraceFormat.Size(SizeDiff, sign: true)}), count={Count} ({CountDiff.ToString("+0;-0;+0", CultureInfo.InvariantCulture)})"
        + (Count > 0 ? $", average={TraceFormat.Size((double)Size / Count)}" : "");
}
