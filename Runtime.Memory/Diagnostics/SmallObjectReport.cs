using System.Globalization;
using System.Text;

namespace Runtime.Memory.Diagnostics;

/// <summary>
/// Formats <see cref="SmallObjectStatistics"/> in the layout of CPython's <c>sys._debugmallocstats()</c>
/// (<c>pymalloc_print_stats</c>): the class table, then the arena and byte figures, each label padded to column
/// 35 and each value right-aligned in 21 characters with thousands separators.
/// </summary>
public static class SmallObjectReport
{
    /// <summary>The report; ends with a newline.</summary>
    public static string Format(SmallObjectStatistics s)
    {
        ArgumentNullException.ThrowIfNull(s);
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"Small block threshold = {SmallObjectAllocator.SmallRequestThreshold}, in {s.Classes.Count} size classes.\n\n");
        text.Append("class   size   num pools   blocks in use  avail blocks\n");
        text.Append("-----   ----   ---------   -------------  ------------\n");
        foreach (SizeClassStatistics c in s.Classes.Where(c => c.Pools > 0))
        {
            text.Append(CultureInfo.InvariantCulture, $"{c.Index,5} {c.Size,6} {c.Pools,11} {c.BlocksInUse,15} {c.AvailableBlocks,13}\n");
        }

        text.Append('\n');
        Line(text, "# arenas allocated total", s.ArenasAllocatedTotal);
        Line(text, "# arenas reclaimed", s.ArenasReclaimed);
        Line(text, "# arenas highwater mark", s.ArenasHighWater);
        Line(text, "# arenas allocated current", s.ArenasCurrent);
        Line(text, string.Create(CultureInfo.InvariantCulture, $"{s.ArenasCurrent} arenas * {SmallObjectAllocator.ArenaSize} bytes/arena"), s.TotalBytes);
        text.Append('\n');
        Line(text, "# bytes in allocated blocks", s.BytesInAllocatedBlocks);
        Line(text, "# bytes in available blocks", s.BytesInAvailableBlocks);
        Line(text, string.Create(CultureInfo.InvariantCulture, $"{s.UnusedPools} unused pools * {SmallObjectAllocator.PoolSize} bytes"), s.UnusedPools * SmallObjectAllocator.PoolSize);
        Line(text, "# bytes lost to pool headers", s.BytesLostToPoolHeaders);
        Line(text, "# bytes lost to quantization", s.BytesLostToQuantization);
        Line(text, "# bytes lost to arena alignment", s.BytesLostToArenaAlignment);
        Line(text, "Total", s.TotalBytes);
        return text.ToString();
    }

    private static void Line(StringBuilder text, string label, long value) =>
        text.Append(label.PadRight(35)).Append('=').Append(value.ToString("N0", CultureInfo.InvariantCulture).PadLeft(21)).Append('\n');
}
