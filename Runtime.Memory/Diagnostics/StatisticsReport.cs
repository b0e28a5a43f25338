using System.Globalization;
using System.Text;

namespace Runtime.Memory.Diagnostics;

/// <summary>Formats <see cref="RuntimeMemoryStatistics"/> as the fixed-width text table the host prints.</summary>
public static class StatisticsReport
{
    private static readonly string[] Headings =
        ["domain", "allocator", "live blocks", "live bytes", "peak bytes", "allocations", "frees", "reallocs", "failures"];

    /// <summary>
    /// The per-domain table: one heading line, one line per domain, one line of totals, then one line per budget that
    /// is set or has refused something. Numbers are right-aligned with invariant-culture digit grouping; the text ends
    /// with a newline.
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

        AppendBudgets(text, statistics);
        return text.ToString();
    }

    /// <summary>One line per budget set or refusing (none when no budget was ever involved): <c>budget obj: 1,048,576 bytes, 5 refused</c>.</summary>
    private static void AppendBudgets(StringBuilder text, RuntimeMemoryStatistics statistics)
    {
        foreach (DomainStatistics d in statistics.Domains.Where(d => d.MaxBytes is not null || d.LimitRefusals != 0))
        {
            text.Append(CultureInfo.InvariantCulture, $"budget {d.Domain.ToName()}: {Limit(d.MaxBytes)}, {N(d.LimitRefusals)} refused\n");
        }

        foreach (LibraryStatistics l in statistics.Libraries.Where(l => l.MaxBytes is not null || l.LimitRefusals != 0))
        {
            text.Append(CultureInfo.InvariantCulture, $"budget {l.Tag}: {Limit(l.MaxBytes)}, {N(l.LimitRefusals)} refused, {N(l.LiveBytes)} bytes live\n");
        }
    }

    private static string Limit(long? maxBytes) => maxBytes is { } max ? $"{N(max)} bytes" : "none";

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);
}
