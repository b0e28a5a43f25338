using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using Runtime.Memory.Buffers;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>--pool-loop</c>: the <see cref="PoolBenchmarks"/> rows as Stopwatch loops in this process, a check that takes
/// seconds. The rows run in turn, 15 rounds after two seconds of warm-up, and each keeps its best round (ns per pair):
/// a machine shared with other tenants slows whole stretches.
/// </summary>
internal static class PoolLoop
{
    private const int Pairs = 200_000;
    private const int Rounds = 15;

    public static int Run()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        MemoryPool<byte> pool = runtime.Obj.AsMemoryPool();
        (string Name, Action<int> Run)[] rows =
        [
            ("obj domain: Malloc(4096) + Free", n => PoolBenchmarks.RawPairs(runtime.Obj, n)),
            ("obj domain: MemoryPool Rent(4096) + Dispose", n => PoolBenchmarks.PoolPairs(pool, n)),
            ("ArrayPool<byte>.Shared Rent(4096) + Return", PoolBenchmarks.ArrayPoolPairs),
        ];

        var warmup = Stopwatch.StartNew();
        while (warmup.Elapsed < TimeSpan.FromSeconds(2))
        {
            foreach (var row in rows)
            {
                row.Run(Pairs / 10);
            }
        }

        double[] best = [double.MaxValue, double.MaxValue, double.MaxValue];
        for (int round = 0; round < Rounds; round++)
        {
            for (int r = 0; r < rows.Length; r++)
            {
                long start = Stopwatch.GetTimestamp();
                rows[r].Run(Pairs);
                double ns = Stopwatch.GetElapsedTime(start).TotalNanoseconds / Pairs;
                best[r] = Math.Min(best[r], ns);
            }
        }

        Console.WriteLine($"pool4k: best of {Rounds} rounds of {Pairs:N0} pairs, ns per pair ({runtime.AllocatorName} allocator)");
        Console.WriteLine();
        Console.WriteLine("| row | ns/pair | ÷ raw pair |");
        Console.WriteLine("|---|---:|---:|");
        for (int r = 0; r < rows.Length; r++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"| {rows[r].Name} | {best[r]:F1} | {best[r] / best[0]:F2} |"));
        }

        return runtime.Obj.LiveBlocks == 0 ? 0 : 1;
    }
}
