using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>--tracing-loop</c>: the tracing rows of <c>pair16</c> and <c>churn</c> as plain Stopwatch loops, a check on the
/// BenchmarkDotNet figures that takes a minute. Each (workload, mode) runs in a fresh process, so the JIT's profile of
/// one mode does not shape the code of another; each prints the best of 15 repetitions (ns per pair, or per churn
/// step including the fill and teardown, as in <see cref="ChurnBenchmarks"/>, with the same sizes). The modes run in
/// turn, five rounds, and the table keeps each one's best: a machine shared with other tenants slows whole seconds.
/// </summary>
internal static unsafe class TracingLoop
{
    private static readonly string[] Modes = ["off", "exact", "sampled", "exact-provider"];
    private static readonly string[] Workloads = ["pair16", "churn"];
    private const int Rounds = 5;

    public static int RunAll()
    {
        Console.WriteLine($"tracing loop: best of {Rounds} rounds of 15 repetitions, ns per operation, each run in a fresh process");
        Console.WriteLine();
        Console.WriteLine("exact and sampled: frames from ThreadFrameStack; exact, own provider: from an IFrameProvider the tracer calls");
        Console.WriteLine();
        Console.WriteLine("| workload | off | exact | exact ÷ off | sampled | sampled ÷ off | exact, own provider | ÷ off |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|---:|");
        foreach (string workload in Workloads)
        {
            double[] ns = [double.MaxValue, double.MaxValue, double.MaxValue, double.MaxValue];
            for (int round = 0; round < Rounds; round++)
            {
                for (int m = 0; m < Modes.Length; m++)
                {
                    (int exitCode, string output, string error) = ChildProcess.Run("--tracing-loop-one", workload, Modes[m]);
                    if (exitCode != 0 || !double.TryParse(output, CultureInfo.InvariantCulture, out double run))
                    {
                        Console.Error.WriteLine($"{workload} {Modes[m]}: failed (exit {exitCode}): {error}");
                        return 1;
                    }

                    ns[m] = Math.Min(ns[m], run);
                }
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {workload} | {ns[0]:F1} ns | {ns[1]:F1} ns | {ns[1] / ns[0]:F2} | {ns[2]:F1} ns | {ns[2] / ns[0]:F2} | {ns[3]:F1} ns | {ns[3] / ns[0]:F2} |"));
        }

        return 0;
    }

    public static int RunOne(string workload, string mode)
    {
        if (Array.IndexOf(Workloads, workload) < 0 || Array.IndexOf(Modes, mode) < 0)
        {
            Console.Error.WriteLine($"--tracing-loop-one: expected a workload ({string.Join(", ", Workloads)}) and a mode ({string.Join(", ", Modes)})");
            return 2;
        }

        using RuntimeMemory runtime = mode switch
        {
            "exact" => TracingSetup.Traced(),
            "sampled" => TracingSetup.Traced(TracingSetup.SampleBytes),
            "exact-provider" => TracingSetup.Traced(customProvider: true),
            _ => RuntimeMemory.Create(),
        };
        var churn = new ChurnBenchmarks();
        churn.Setup();
        try
        {
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

            var warm = Stopwatch.StartNew(); // two seconds first: every method on the path tiered up (and OSR left behind)
            while (warm.ElapsedMilliseconds < 2000)
            {
                Repetition();
            }

            double best = double.MaxValue;
            for (int rep = 0; rep < 15; rep++)
            {
                best = Math.Min(best, Repetition());
            }

            if (mode.StartsWith("exact", StringComparison.Ordinal) && !TracesBenchFrame(runtime))
            {
                Console.Error.WriteLine($"{workload} {mode}: a block allocated now is not traced at bench.lua:42");
                return 1;
            }

            Console.WriteLine(best.ToString("F2", CultureInfo.InvariantCulture));
            return 0;
        }
        finally
        {
            churn.Cleanup();
        }

    }

    /// <summary>Whether the tracer really traces on this thread, with the benchmark's frame.</summary>
    private static bool TracesBenchFrame(RuntimeMemory runtime)
    {
        void* p = runtime.Obj.Malloc(16);
        try
        {
            return runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, p) is { } tb && tb.MostRecent.ToString() == "bench.lua:42";
        }
        finally
        {
            runtime.Obj.Free(p);
        }
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
