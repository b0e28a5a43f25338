using System.Globalization;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>--tracing-loop</c>: the tracing rows of <c>pair16</c> and <c>churn</c> as plain Stopwatch loops
/// (<see cref="OverheadLoop"/>). Exact and sampled take their frames from ThreadFrameStack; exact-provider from an
/// IFrameProvider the tracer calls.
/// </summary>
internal static unsafe class TracingLoop
{
    private const string Child = "--tracing-loop-one";
    private static readonly string[] Modes = ["off", "exact", "sampled", "exact-provider"];

    public static int RunAll() => OverheadLoop.RunAll("tracing loop", Child, Modes);

    public static int RunOne(string workload, string mode)
    {
        if (!OverheadLoop.IsWorkload(Child, workload, mode, Modes))
        {
            return 2;
        }

        using RuntimeMemory runtime = mode switch
        {
            "exact" => TracingSetup.Traced(),
            "sampled" => TracingSetup.Traced(TracingSetup.SampleBytes),
            "exact-provider" => TracingSetup.Traced(customProvider: true),
            _ => RuntimeMemory.Create(),
        };
        double best = OverheadLoop.Measure(runtime, workload);
        if (mode.StartsWith("exact", StringComparison.Ordinal) && !TracesBenchFrame(runtime))
        {
            Console.Error.WriteLine($"{workload} {mode}: a block allocated now is not traced at bench.lua:42");
            return 1;
        }

        Console.WriteLine(best.ToString("F2", CultureInfo.InvariantCulture));
        return 0;
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
}
