using System.Diagnostics;
using System.Globalization;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>--lua-loop</c>: binary-trees (<see cref="LuaBenchmarks"/>, depth 16) on Lua's own allocator and routed into the
/// obj domain on <c>default</c>, <c>malloc</c> and <c>mimalloc</c>, in one process, the rows interleaved round by round,
/// best of five rounds each after one warm-up round: a check on the BenchmarkDotNet figures that takes a minute or two
/// on a machine whose speed drifts. Prints one table with each route row against Lua's own allocator.
/// </summary>
internal static class LuaLoop
{
    private const int Rounds = 5;

    public static int Run(string? only = null)
    {
        var bench = new LuaBenchmarks();
        bench.Setup();
        var rows = new (string Name, Func<long> Run)[]
        {
            ("Lua's own allocator (l_alloc: glibc realloc/free)", bench.Glibc),
            ("route -> obj on default", bench.RouteDefault),
            ("route -> obj on malloc", bench.RouteMalloc),
            ("route -> obj on mimalloc", bench.RouteMimalloc),
        };
        if (only is not null)
        {
            rows = rows.Where(r => r.Name.Contains(only, StringComparison.Ordinal)).ToArray();
        }

        double[] best = Enumerable.Repeat(double.MaxValue, rows.Length).ToArray();
        for (int round = -1; round < Rounds; round++)
        {
            for (int r = 0; r < rows.Length; r++)
            {
                var watch = Stopwatch.StartNew();
                rows[r].Run();
                if (round >= 0)
                {
                    best[r] = Math.Min(best[r], watch.Elapsed.TotalSeconds);
                }
            }
        }

        bench.Cleanup();
        Console.WriteLine($"lua loop: binary-trees depth 16, best of {Rounds} interleaved rounds (after one warm-up round), seconds");
        Console.WriteLine();
        Console.WriteLine("| row | time | ÷ Lua's own allocator |");
        Console.WriteLine("|---|---:|---:|");
        for (int r = 0; r < rows.Length; r++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {rows[r].Name} | {best[r]:F3} s | {(only is null ? (best[r] / best[0]).ToString("F2", CultureInfo.InvariantCulture) : "n/a")} |"));
        }

        return 0;
    }
}
