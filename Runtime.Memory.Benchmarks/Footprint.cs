using System.Diagnostics;
using System.Globalization;
using System.Reflection;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>footprint</c>: resident memory (VmRSS) in a warm second cycle, for each allocator in a child process of its own.
/// A cycle allocates 1,000,000 blocks of 16–64 B, frees them all in a shuffled order, then (ours only) calls
/// <see cref="SmallObjectAllocator.Collect"/>. The first cycle warms the allocator (its heap grown once, the JIT done);
/// the table shows the second, identical cycle: how much the allocation made RSS grow, and how much of that remains
/// after the frees (and Collect). The peers get no trim call: what they keep is what a program using them keeps.
/// Run: <c>dotnet run -c Release --project Runtime.Memory.Benchmarks -- --footprint</c> (also the last table of
/// <c>--compare</c>).
/// </summary>
internal static unsafe class Footprint
{
    private const int Blocks = 1_000_000;
    private static readonly string[] Allocators = ["obj domain", "glibc", "mimalloc", "tcmalloc"];

    /// <summary>Runs each allocator in a child process and prints one markdown table.</summary>
    public static int RunAll()
    {
        Console.WriteLine($"footprint: {Blocks:N0} blocks of 16-64 B allocated, then freed in a shuffled order (and, ours only, Collect()); "
            + "the second of two identical cycles, resident memory (VmRSS) of a fresh process per allocator");
        Console.WriteLine();
        Console.WriteLine("| allocator | RSS fresh | RSS before cycle 2 | growth by the allocation | RSS after free (+ Collect) | remains (after free − before cycle 2) | after free − fresh |");
        Console.WriteLine("|---|---:|---:|---:|---:|---:|---:|");
        int failed = 0;
        foreach (string allocator in Allocators)
        {
            (int exitCode, string line, string problem) = ChildProcess.Run("--footprint-one", allocator);
            bool ok = exitCode == 0 && line.Length > 0;
            failed += ok ? 0 : 1;
            Console.WriteLine(ok
                ? line
                : $"| {allocator} | failed (exit {exitCode}): {problem.ReplaceLineEndings(" ")} | | | | | |");
        }

        return failed == 0 ? 0 : 1;
    }

    /// <summary>One allocator, in this process: prints one table row (or a "missing" row for an absent peer).</summary>
    public static int RunOne(string allocator)
    {
        if (Array.IndexOf(Allocators, allocator) < 0)
        {
            Console.Error.WriteLine($"--footprint-one: unknown allocator '{allocator}'; expected one of: {string.Join(", ", Allocators)}");
            return 2;
        }

        string? missing = allocator switch // the row itself says why (stdout is the table row)
        {
            "mimalloc" => Peers.MimallocProblem,
            "tcmalloc" => Peers.TcmallocProblem,
            _ => null,
        };
        if (missing is not null)
        {
            Console.WriteLine($"| {allocator} | {missing} | | | | | |");
            return 0;
        }

        // Fixed seeds: every allocator gets the same 1,000,000 sizes, uniform in 16–64 B, and the same free order.
        var sizes = new nuint[Blocks];
        var rng = new Random(7);
        for (int i = 0; i < Blocks; i++)
        {
            sizes[i] = (nuint)rng.Next(16, 65);
        }

        int[] freeOrder = Enumerable.Range(0, Blocks).ToArray();
        new Random(8).Shuffle(freeOrder);
        var blocks = new nint[Blocks];
        Array.Fill(blocks, 1); // touch every page of the array now, so it is already in "fresh"
        Array.Clear(blocks);

        using RuntimeMemory? runtime = allocator == "obj domain" ? RuntimeMemory.Create() : null;
        SmallObjectAllocator? small = runtime?.SmallObjects(MemoryDomainKind.Obj);

        long fresh = ResidentKiB();
        Cycle(allocator, runtime, small, sizes, freeOrder, blocks, out _);
        long before = ResidentKiB();
        Cycle(allocator, runtime, small, sizes, freeOrder, blocks, out long peak);
        long after = ResidentKiB();

        string name = small is null ? allocator : $"{allocator} (arenas left after Collect: {small.GetStatistics().ArenasCurrent})";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {fresh:N0} KiB | {before:N0} KiB | {peak - before:N0} KiB | {after:N0} KiB | {after - before:N0} KiB | {after - fresh:N0} KiB |"));
        return 0;
    }

    /// <summary>
    /// One cycle: every block allocated (<paramref name="peak"/> is the RSS then), every block freed in
    /// <paramref name="freeOrder"/>, then ours collects: the empty pools the calling thread keeps for speed go back
    /// (see <see cref="SmallObjectAllocator"/>), so what remains is what the allocator holds with nothing live.
    /// </summary>
    private static void Cycle(string allocator, RuntimeMemory? runtime, SmallObjectAllocator? small, nuint[] sizes, int[] freeOrder, nint[] blocks, out long peak)
    {
        AllocateAll(allocator, runtime, sizes, blocks);
        peak = ResidentKiB();
        FreeAll(allocator, runtime, blocks, freeOrder);
        small?.Collect();
    }

    private static void AllocateAll(string allocator, RuntimeMemory? runtime, nuint[] sizes, nint[] blocks)
    {
        for (int i = 0; i < blocks.Length; i++)
        {
            blocks[i] = allocator switch
            {
                "glibc" => (nint)Peers.GlibcMalloc(sizes[i]),
                "mimalloc" => (nint)Peers.MiMalloc(sizes[i]),
                "tcmalloc" => (nint)Peers.TcMalloc(sizes[i]),
                _ => (nint)runtime!.Obj.Malloc(sizes[i]),
            };
        }
    }

    private static void FreeAll(string allocator, RuntimeMemory? runtime, nint[] blocks, int[] freeOrder)
    {
        foreach (int i in freeOrder)
        {
            void* p = (void*)blocks[i];
            switch (allocator)
            {
                case "glibc": Peers.GlibcFree(p); break;
                case "mimalloc": Peers.MiFree(p); break;
                case "tcmalloc": Peers.TcFree(p); break;
                default: runtime!.Obj.Free(p); break;
            }

            blocks[i] = 0;
        }
    }

    /// <summary>VmRSS of this process, in KiB, from /proc/self/status.</summary>
    private static long ResidentKiB()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        return -1;
    }
}
