using System.Globalization;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>--compare</c>: every workload (pair16, pair64, batch, churn, grow, xthread, pool4k, zlib, lua, sqlite) in one
/// BenchmarkDotNet run, then one table of ratios: each of our rows (the obj domain plain and with debug hooks, tracing,
/// sampling, metrics, a budget; the raw domain; the Lua, zlib and SQLite routes) against glibc, mimalloc and tcmalloc
/// measured in the same run, against the native library's own allocator (a route's workload), and against our plain
/// row (the overhead of a feature; on pool4k, the safe API's MemoryPool against the raw pair). A ratio below 1 means we are faster. Then the footprint table
/// (<see cref="Footprint"/>), each allocator in a child process.
/// </summary>
internal static class Comparison
{
    /// <summary>
    /// Per workload: the description of our plain row, of each peer's row, and of the row of the native library's own
    /// allocator (the routes' workloads: what every route row is set against in "÷ own allocator").
    /// </summary>
    private static readonly Dictionary<string, (string Ours, string? Glibc, string? Mimalloc, string? Tcmalloc, string? Own)> Rows = new()
    {
        ["pair16"] = ("obj domain", "glibc", "mimalloc", "tcmalloc", null),
        ["pair64"] = ("obj domain", "glibc", "mimalloc", "tcmalloc", null),
        ["batch"] = ("obj domain", "glibc", "mimalloc", "tcmalloc", null),
        ["churn"] = ("obj domain", "glibc", "mimalloc", "tcmalloc", null),
        ["grow"] = ("obj domain", "glibc", "mimalloc", "tcmalloc", null),
        ["xthread"] = ("obj domain", "glibc", "mimalloc", "tcmalloc", null),
        ["pool4k"] = ("obj domain", "glibc", null, null, null),
        ["lua"] = ("route -> obj on default", "glibc (Lua's own l_alloc)", "mimalloc (lua_Alloc through function pointers)", "tcmalloc (lua_Alloc through function pointers)", "glibc (Lua's own l_alloc)"),
        ["zlib"] = ("routed into raw", "zlib's own allocator", null, null, "zlib's own allocator"),
        ["sqlite"] = ("routed into raw", "SQLite's own allocator", null, null, "SQLite's own allocator"),
    };

    /// <summary>The raw domain's row (the system allocator behind a domain), listed right after the plain row.</summary>
    private const string RawDomain = "raw domain";

    public static int Run(string[] bdnArgs)
    {
        string[] args = bdnArgs.Length > 0 ? bdnArgs : ["--warmupCount", "3", "--iterationCount", "8"];
        string[] filter = args.Any(a => a is "--filter" or "-f") ? [] : ["--filter", "*"]; // a filter given runs a part (a check)
        IEnumerable<Summary> summaries = BenchmarkSwitcher.FromAssembly(typeof(Peers).Assembly).Run([.. filter, .. args]);

        var means = new Dictionary<(string Workload, string Row), double>();
        foreach (BenchmarkReport report in summaries.SelectMany(s => s.Reports))
        {
            string? workload = report.BenchmarkCase.Descriptor.Categories.FirstOrDefault(Rows.ContainsKey);
            if (workload is not null && report.ResultStatistics is { } statistics)
            {
                means[(workload, report.BenchmarkCase.Descriptor.WorkloadMethodDisplayInfo.Trim('\''))] = statistics.Mean; // BenchmarkDotNet quotes a description with spaces
            }
        }

        Console.WriteLine();
        Console.WriteLine(Format(means));
        Console.WriteLine($"Peers: glibc (libc.so.6); mimalloc {(Peers.HasMimalloc ? "libmimalloc.so.2" : "missing")}; tcmalloc {(Peers.HasTcmalloc ? "libtcmalloc_minimal.so.4" : "missing")}. BenchmarkDotNet arguments: {string.Join(' ', args)}");
        Console.WriteLine();
        int footprint = Footprint.RunAll();
        return means.Count == 0 || footprint != 0 ? 1 : 0;
    }

    /// <summary>The table: one line per row of ours, in workload order; "n/a" where a peer has no row or did not run.</summary>
    internal static string Format(IReadOnlyDictionary<(string Workload, string Row), double> means)
    {
        var text = new System.Text.StringBuilder();
        text.AppendLine("| workload | row | time | ÷ glibc | ÷ mimalloc | ÷ tcmalloc | ÷ own allocator | ÷ our plain row |");
        text.AppendLine("|---|---|---:|---:|---:|---:|---:|---:|");
        foreach ((string workload, var names) in Rows)
        {
            double? Mean(string? row) => row is not null && means.TryGetValue((workload, row), out double m) && m > 0 ? m : null;
            double? plain = Mean(names.Ours);
            IEnumerable<string> ours = means.Keys.Where(k => k.Workload == workload && IsOurs(k.Row)).Select(k => k.Row)
                .OrderBy(r => r == names.Ours ? 0 : r == RawDomain ? 1 : 2).ThenBy(r => r, StringComparer.Ordinal);
            foreach (string row in ours)
            {
                double mean = means[(workload, row)];
                text.AppendLine(CultureInfo.InvariantCulture,
                    $"| {workload} | {row} | {Time(mean)} | {Ratio(mean, Mean(names.Glibc))} | {Ratio(mean, Mean(names.Mimalloc))} | {Ratio(mean, Mean(names.Tcmalloc))} | {Ratio(mean, Mean(names.Own))} | {(row == names.Ours ? "1.00" : Ratio(mean, plain))} |");
            }
        }

        return text.ToString();
    }

    /// <summary>Our rows: the obj domain (plain and with a feature), the raw domain, and the routes of native libraries.</summary>
    private static bool IsOurs(string row) =>
        row.StartsWith("obj domain", StringComparison.Ordinal) || row.StartsWith("raw domain", StringComparison.Ordinal) || row.StartsWith("route", StringComparison.Ordinal);

    private static string Ratio(double mean, double? peer) => peer is { } p ? (mean / p).ToString("0.00", CultureInfo.InvariantCulture) : "n/a";

    private static string Time(double ns) => ns switch
    {
        >= 1e9 => (ns / 1e9).ToString("0.00 's'", CultureInfo.InvariantCulture),
        >= 1e6 => (ns / 1e6).ToString("0.00 'ms'", CultureInfo.InvariantCulture),
        >= 1e3 => (ns / 1e3).ToString("0.00 'µs'", CultureInfo.InvariantCulture),
        _ => ns.ToString("0.0 'ns'", CultureInfo.InvariantCulture),
    };
}
