using System.Diagnostics;
using System.Globalization;

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
        Console.WriteLine("| allocator | RSS before | RSS after allocating | RSS after freeing | after freeing - before |");
        Console.WriteLine("|---|---:|---:|---:|---:|");
        foreach (string allocator in Allocators)
        {
            var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
            if (Path.GetFileName(Environment.ProcessPath!) is "dotnet" or "dotnet.exe")
            {
                start.ArgumentList.Add(typeof(Footprint).Assembly.Location); // running under the muxer: name the assembly
            }

            start.ArgumentList.Add("--footprint-one");
            start.ArgumentList.Add(allocator);
            using Process child = Process.Start(start)!;
            string line = child.StandardOutput.ReadToEnd().Trim();
            string error = child.StandardError.ReadToEnd().Trim();
            child.WaitForExit();
            Console.WriteLine(child.ExitCode == 0 ? line : $"| {allocator} | failed: {error} | | | |");
        }

        return 0;
    }

    /// <summary>One allocator, in this process: prints one table row.</summary>
    public static int RunOne(string allocator)
    {
        var sizes = new nuint[Blocks];
        var rng = new Random(7);
        for (int i = 0; i < Blocks; i++)
        {
            sizes[i] = (nuint)rng.Next(16, 65);
        }

        var blocks = new nint[Blocks];
        RuntimeMemory? runtime = allocator == "obj domain" ? RuntimeMemory.Create() : null;
        if (allocator == "mimalloc" && !Peers.CheckMimalloc())
        {
            Console.WriteLine($"| mimalloc | missing: {Peers.MimallocProblem} | | | |");
            return 0;
        }

        // Touch the arrays and warm every code path once, so the "before" figure holds the process, not the test.
        Array.Fill(blocks, 0);
        Run(allocator, runtime, sizes[..1000], blocks);
        long before = ResidentKiB();
        Run(allocator, runtime, sizes, blocks, free: false);
        long allocated = ResidentKiB();
        Free(allocator, runtime, blocks);
        runtime?.SmallObjects(MemoryDomainKind.Obj)!.Collect(); // the thread gives back the pools it keeps (see SmallObjectAllocator)
        long after = ResidentKiB();
        string extra = runtime is null ? "" : $" (arenas left: {runtime.SmallObjects(MemoryDomainKind.Obj)!.GetStatistics().ArenasCurrent})";
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"| {allocator}{extra} | {before:N0} KiB | {allocated:N0} KiB | {after:N0} KiB | {after - before:N0} KiB |"));
        runtime?.Dispose();
        return 0;
    }

    private static void Run(string allocator, RuntimeMemory? runtime, nuint[] sizes, nint[] blocks, bool free = true)
    {
        for (int i = 0; i < sizes.Length; i++)
        {
            blocks[i] = allocator switch
            {
                "glibc" => (nint)Peers.GlibcMalloc(sizes[i]),
                "mimalloc" => (nint)Peers.MiMalloc(sizes[i]),
                _ => (nint)runtime!.Obj.Malloc(sizes[i]),
            };
        }

        if (free)
        {
            Free(allocator, runtime, blocks.AsSpan(0, sizes.Length).ToArray());
            Array.Clear(blocks);
        }
    }

    private static void Free(string allocator, RuntimeMemory? runtime, nint[] blocks)
    {
        foreach (nint p in blocks)
        {
            if (p == 0)
            {
                continue;
            }

            switch (allocator)
            {
                case "glibc": Peers.GlibcFree((void*)p); break;
                case "mimalloc": Peers.MiFree((void*)p); break;
                default: runtime!.Obj.Free((void*)p); break;
            }
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
