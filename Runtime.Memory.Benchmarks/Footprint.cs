using System.Diagnostics;
using System.Globalization;
using System.Reflection;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>footprint</c>: resident memory (VmRSS) of a fresh process before allocating, after allocating 1,000,000 blocks
/// of 16–64 B, and after freeing them all, for each allocator in its own child process.
/// Run: <c>dotnet run -c Release --project Runtime.Memory.Benchmarks -- --footprint</c>.
/// </summary>
internal static unsafe class Footprint
{
    private const int Blocks = 1_000_000;
    private static readonly string[] Allocators = ["obj domain", "glibc", "mimalloc"];

    /// <summary>Runs each allocator in a child process and prints one markdown table.</summary>
    public static int RunAll()
    {
        Console.WriteLine($"footprint: {Blocks:N0} blocks of 16-64 B, resident memory (VmRSS) of a fresh process per allocator");
        Console.WriteLine();
        Console.WriteLine("| allocator | RSS before | RSS peak (after alloc) | RSS after free | after-free minus before |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (string allocator in Allocators)
        {
            (int exitCode, string line, string problem) = ChildProcess.Run("--footprint-one", allocator);
            Console.WriteLine(exitCode == 0 && line.Length > 0
                ? line
                : $"| {allocator} | failed (exit {exitCode}): {problem.ReplaceLineEndings(" ")} | | | |");
        }

        return 0;
    }

    /// <summary>One allocator, in this process: prints one table row (or a "missing" row for an absent mimalloc).</summary>
    public static int RunOne(string allocator)
    {
        if (Array.IndexOf(Allocators, allocator) < 0)
        {
            Console.Error.WriteLine($"--footprint-one: unknown allocator '{allocator}'; expected one of: {string.Join(", ", Allocators)}");
            return 2;
        }

        if (allocator == "mimalloc" && !Peers.HasMimalloc) // the row itself says why (stdout is the table row)
        {
            Console.WriteLine($"| mimalloc | {Peers.MimallocProblem} | | | |");
            return 0;
        }

        // Fixed seed: every allocator gets the same 1,000,000 sizes, uniform in 16–64 B.
        var sizes = new nuint[Blocks];
        var rng = new Random(7);
        for (int i = 0; i < Blocks; i++)
        {
            sizes[i] = (nuint)rng.Next(16, 65);
        }

        var blocks = new nint[Blocks];
        Array.Fill(blocks, 1); // touch every page of the array now, so it is already in "before"
        Array.Clear(blocks);

        using RuntimeMemory? runtime = allocator == "obj domain" ? RuntimeMemory.Create() : null;

        // Warm every code path (JIT, allocator initialisation) on a few blocks, so "before" holds the process and
        // the test's own arrays, not first-use costs.
        AllocateAll(allocator, runtime, sizes, blocks, count: 1000);
        FreeAll(allocator, runtime, blocks, count: 1000);
        runtime?.SmallObjects(MemoryDomainKind.Obj)!.Collect();

        long before = ResidentKiB();
        AllocateAll(allocator, runtime, sizes, blocks, Blocks);
        long peak = ResidentKiB();
        FreeAll(allocator, runtime, blocks, Blocks);

        // Ours: Collect gives back the empty pools the calling thread keeps for speed (see SmallObjectAllocator),
        // so "after free" shows what the allocator holds with nothing live. The peers get no such call.
        SmallObjectAllocator? small = runtime?.SmallObjects(MemoryDomainKind.Obj);
        small?.Collect();
        long after = ResidentKiB();

        string name = small is null ? allocator : $"{allocator} (arenas left after Collect: {small.GetStatistics().ArenasCurrent})";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {name} | {before:N0} KiB | {peak:N0} KiB | {after:N0} KiB | {after - before:N0} KiB |"));
        return 0;
    }

    private static void AllocateAll(string allocator, RuntimeMemory? runtime, nuint[] sizes, nint[] blocks, int count)
    {
        for (int i = 0; i < count; i++)
        {
            blocks[i] = allocator switch
            {
                "glibc" => (nint)Peers.GlibcMalloc(sizes[i]),
                "mimalloc" => (nint)Peers.MiMalloc(sizes[i]),
                _ => (nint)runtime!.Obj.Malloc(sizes[i]),
            };
        }
    }

    private static void FreeAll(string allocator, RuntimeMemory? runtime, nint[] blocks, int count)
    {
        for (int i = 0; i < count; i++)
        {
            void* p = (void*)blocks[i];
            switch (allocator)
            {
                case "glibc": Peers.GlibcFree(p); break;
                case "mimalloc": Peers.MiFree(p); break;
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
