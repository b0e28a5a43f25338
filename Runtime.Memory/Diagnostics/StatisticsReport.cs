using System.Globalization;
using System.Text;

namespace Runtime.Memory.Diagnostics;

/// <summary>Formats <see cref="RuntimeMemoryStatistics"/> as the fixed-width text table the host prints.</summary>
public static class StatisticsReport
{
    private static readonly string[] Headings =
        ["domain", "allocator", "live blocks", "live bytes", "peak bytes", "allocations", "frees", "reallocs", "failures"];

    /// <summary>
    /// The per-domain table: one heading line, one line per domain, one line of totals. Numbers are right-aligned
    /// with invariant-culture digit grouping; the text ends with a newline.
    /// </summary>
    public static string Format(RuntimeMemoryStatistics statistics)
    {
        ArgumentNullException.ThrowIfNull(statistics);
        var rows = new List<string[]> { Headings };
        foreach (DomainStatistics d in statistics.Domains)
        {
            rows.Add([
                d.Domain.ToName(), d.Allocator, N(d.LiveBlocks), N(d.LiveBytes), N(d.PeakBytes),
                N(d.Allocations), N(d.Frees), N(d.Reallocations), N(d.Failures)]);
        }

        rows.Add([
            "total", "", N(statistics.LiveBlocks), N(statistics.LiveBytes), "",
            N(statistics.Domains.Sum(d => d.Allocations)), N(statistics.Domains.Sum(d => d.Frees)),
            N(statistics.Domains.Sum(d => d.Reallocations)), N(statistics.Domains.Sum(d => d.Failures))]);

        int[] widths = new int[Headings.Length];
        foreach (string[] row in rows)
        {
            for (int i = 0; i < row.Length; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }

        var text = new StringBuilder();
        var line = new StringBuilder();
        foreach (string[] row in rows)
        {
            line.Clear();
            for (int i = 0; i < row.Length; i++)
            {
                // The first two columns are names (left-aligned); the rest are numbers (right-aligned).
                line.Append(i == 0 ? "" : "  ").Append(i < 2 ? row[i].PadRight(widths[i]) : row[i].PadLeft(widths[i]));
            }

            text.Append(line.ToString().TrimEnd()).Append('\n');
        }

        return text.ToString();
    }

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
