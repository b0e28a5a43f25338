using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// The overhead rows of <c>pair16</c> and <c>churn</c> as plain Stopwatch loops, a check on the BenchmarkDotNet figures
/// that takes a minute or two. Each (workload, mode) runs in a fresh process, so the JIT's profile of one mode does not
/// shape the code of another; each prints the best of 15 repetitions (ns per pair, or per churn step including the fill
/// and teardown, as in <see cref="ChurnBenchmarks"/>, with the same sizes). The modes run in turn, five rounds, and the
/// table keeps each one's best: a machine shared with other tenants slows whole seconds.
/// </summary>
/// <remarks>
/// <code>
///   --tracing-loop        off, exact, sampled, exact-provider   (TracingLoop)
///   --observability-loop  off, metrics, budget, metrics+budget  (ObservabilityLoop)
/// </code>
/// </remarks>
internal static unsafe class OverheadLoop
{
    private static readonly string[] Workloads = ["pair16", "churn"];
    private const int Rounds = 5;

    /// <summary>Runs every mode of <paramref name="modes"/> (the first is the baseline) through <paramref name="childSwitch"/> and prints the table.</summary>
    public static int RunAll(string title, string childSwitch, string[] modes)
    {
        Console.WriteLine($"{title}: best of {Rounds} rounds of 15 repetitions, ns per operation, each run in a fresh process");
        Console.WriteLine();
        Console.WriteLine("| workload | " + string.Join(" | ", modes.Select((m, i) => i == 0 ? m : $"{m} | ÷ {modes[0]}")) + " |");
        Console.WriteLine("|---|" + string.Concat(modes.Select((_, i) => i == 0 ? "---:|" : "---:|---:|")));
        foreach (string workload in Workloads)
        {
            double[] ns = Enumerable.Repeat(double.MaxValue, modes.Length).ToArray();
            for (int round = 0; round < Rounds; round++)
            {
                for (int m = 0; m < modes.Length; m++)
                {
                    (int exitCode, string output, string error) = ChildProcess.Run(childSwitch, workload, modes[m]);
                    if (exitCode != 0 || !double.TryParse(output, CultureInfo.InvariantCulture, out double run))
                    {
                        Console.Error.WriteLine($"{workload} {modes[m]}: failed (exit {exitCode}): {error}");
                        return 1;
                    }

                    ns[m] = Math.Min(ns[m], run);
                }
            }

            var row = new System.Text.StringBuilder($"| {workload} |");
            for (int m = 0; m < modes.Length; m++)
            {
                row.Append(CultureInfo.InvariantCulture, $" {ns[m]:F1} ns |");
                if (m > 0)
                {
                    row.Append(CultureInfo.InvariantCulture, $" {ns[m] / ns[0]:F2} |");
                }
            }

            Console.WriteLine(row);
        }

        return 0;
    }

    /// <summary>Whether <paramref name="workload"/> is one this loop runs; prints the usage otherwise.</summary>
    public static bool IsWorkload(string childSwitch, string workload, string mode, string[] modes)
    {
        if (Array.IndexOf(Workloads, workload) >= 0 && Array.IndexOf(modes, mode) >= 0)
        {
            return true;
        }

        Console.Error.WriteLine($"{childSwitch}: expected a workload ({string.Join(", ", Workloads)}) and a mode ({string.Join(", ", modes)})");
        return false;
    }

    /// <summary>
    /// The best of 15 repetitions of <paramref name="workload"/> on <paramref name="runtime"/>'s obj domain, after two
    /// seconds of warm-up (every method on the path tiered up, and OSR left behind); ns per pair or per churn step.
    /// </summary>
    public static double Measure(RuntimeMemory runtime, string workload)
    {
        var churn = new ChurnBenchmarks();
        churn.SetupWorkload();

        // One repetition: 2,000,000 pairs (a call per 1,000, as BenchmarkDotNet invokes), or one churn invocation.
        double Repetition()
        {
            var watch = Stopwatch.StartNew();
            if (workload == "pair16")
            {
                for (int k = 0; k < 2000; k++)
                {
                    Pairs(runtime.Obj);
                }

                return watch.Elapsed.TotalNanoseconds / 2_000_000;
            }

            churn.RunOn(runtime.Obj);
            return watch.Elapsed.TotalNanoseconds / ChurnBenchmarks.Steps;
        }

        var warm = Stopwatch.StartNew();
        while (warm.ElapsedMilliseconds < 2000)
        {
            Repetition();
        }

        double best = double.MaxValue;
        for (int rep = 0; rep < 15; rep++)
        {
            best = Math.Min(best, Repetition());
        }

        return best;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Pairs(MemoryDomain obj)
    {
        for (int i = 0; i < 1000; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }
}

/// <summary><c>--observability-loop</c>: <c>pair16</c> and <c>churn</c> with the metrics listened to, a budget set, and both.</summary>
internal static class ObservabilityLoop
{
    private const string Child = "--observability-loop-one";
    private static readonly string[] Modes = ["off", "metrics", "budget", "metrics+budget"];

    public static int RunAll() =>
        OverheadLoop.RunAll("observability loop (metrics collected every 100 ms; budget 1 GiB, never reached)", Child, Modes);

    public static int RunOne(string workload, string mode)
    {
        if (!OverheadLoop.IsWorkload(Child, workload, mode, Modes))
        {
            return 2;
        }

        RuntimeMemory runtime;
        IDisposable? listening = null;
        switch (mode)
        {
            case "metrics":
                (runtime, listening) = ObservabilitySetup.Listened();
                break;
            case "metrics+budget":
                (runtime, listening) = ObservabilitySetup.Listened(budget: true);
                break;
            case "budget":
                runtime = ObservabilitySetup.Budgeted();
                break;
            default:
                runtime = RuntimeMemory.Create();
                break;
        }

        using (runtime)
        using (listening)
        {
            double best = OverheadLoop.Measure(runtime, workload);
            if (runtime.Obj.GetStatistics().LimitRefusals != 0)
            {
                Console.Error.WriteLine($"{workload} {mode}: the budget refused an allocation; the row would not measure what it says");
                return 1;
            }

            Console.WriteLine(best.ToString("F2", CultureInfo.InvariantCulture));
            return 0;
        }
    }
}

/// <summary>
/// <c>--debug-loop</c>: <c>pair16</c> and <c>churn</c> under the debug hooks (<c>pymalloc_debug</c>) with the default
/// quarantine of freed blocks (1 MiB per domain) and without it (<c>QuarantineBytes = 0</c>), against the plain obj domain.
/// </summary>
internal static class DebugLoop
{
    private const string Child = "--debug-loop-one";
    private static readonly string[] Modes = ["off", "debug-no-quarantine", "debug"];

    public static int RunAll() =>
        OverheadLoop.RunAll("debug-hook loop (pymalloc_debug; quarantine 1 MiB per domain, or 0)", Child, Modes);

    public static int RunOne(string workload, string mode)
    {
        // "debug-q<bytes>": another quarantine size, for a one-off comparison (not in the table).
        long? quarantine = mode.StartsWith("debug-q", StringComparison.Ordinal) && long.TryParse(mode["debug-q".Length..], CultureInfo.InvariantCulture, out long q) ? q : null;
        if (quarantine is null && !OverheadLoop.IsWorkload(Child, workload, mode, Modes))
        {
            return 2;
        }

        using RuntimeMemory runtime = mode switch
        {
            _ when quarantine is { } bytes => RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug, Debug = { QuarantineBytes = bytes } }),
            "debug" => RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug }),
            "debug-no-quarantine" => RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug, Debug = { QuarantineBytes = 0 } }),
            _ => RuntimeMemory.Create(),
        };
        double best = OverheadLoop.Measure(runtime, workload);
        if (runtime.Debugger.Violations != 0)
        {
            Console.Error.WriteLine($"{workload} {mode}: the debug hooks reported a violation");
            return 1;
        }

        Console.WriteLine(best.ToString("F2", CultureInfo.InvariantCulture));
        return 0;
    }
}
