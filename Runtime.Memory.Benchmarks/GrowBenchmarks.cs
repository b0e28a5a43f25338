using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>grow</c>: one block grown by realloc from 16 B to 64 KiB in 1.125× steps (16, 18, 20, 22, 25, …, 60,925,
/// 65,536), then freed. It crosses every small size class and then leaves the small-object range, so it measures
/// in-place growth, moves between classes and the hand-over to the large-block path. ns per realloc (the first
/// malloc and the final free are counted in, spread over the 71 reallocs).
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("grow")]
public unsafe class GrowBenchmarks
{
    /// <summary>Reallocs per invocation: the sizes 16 × 1.125^n ≤ 64 KiB (n = 1..70), then 64 KiB itself.</summary>
    private const int Reallocs = 71;
    private const int MaxSize = 64 * 1024;

    private nuint[] _sizes = null!;
    private RuntimeMemory _runtime = null!;

    [GlobalSetup]
    public void Setup()
    {
        _sizes = BuildSizes();
        if (_sizes.Length != Reallocs + 1)
        {
            // OperationsPerInvoke must be a constant: fail loudly if the sequence and the constant disagree.
            throw new InvalidOperationException($"grow: {_sizes.Length - 1} reallocs in the size sequence, Reallocs says {Reallocs}");
        }

        _runtime = RuntimeMemory.Create();
    }

    [GlobalCleanup]
    public void Cleanup() => _runtime.Dispose();

    /// <summary>16 B, then × 1.125 (truncated to whole bytes) while ≤ 64 KiB, ending exactly at 64 KiB.</summary>
    private static nuint[] BuildSizes()
    {
        var sizes = new List<nuint>();
        for (double size = 16; size <= MaxSize; size *= 1.125)
        {
            sizes.Add((nuint)size);
        }

        if (sizes[^1] != MaxSize)
        {
            sizes.Add(MaxSize);
        }

        return [.. sizes];
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Reallocs, Description = "glibc")]
    public void Glibc() => Run(new GlibcOps());

    [Benchmark(OperationsPerInvoke = Reallocs, Description = "mimalloc")]
    public void Mimalloc()
    {
        if (Peers.CheckMimalloc())
        {
            Run(new MimallocOps());
        }
    }

    [Benchmark(OperationsPerInvoke = Reallocs, Description = "tcmalloc")]
    public void Tcmalloc()
    {
        if (Peers.CheckTcmalloc())
        {
            Run(new TcmallocOps());
        }
    }

    [Benchmark(OperationsPerInvoke = Reallocs, Description = "obj domain")]
    public void ObjDomain() => Run(new DomainOps(_runtime.Obj));

    /// <summary>The same reallocs through the raw domain: on the default allocators, the system allocator behind the domain's
    /// front door and accounting, to set against "glibc".</summary>
    [Benchmark(OperationsPerInvoke = Reallocs, Description = "raw domain")]
    public void RawDomain() => Run(new DomainOps(_runtime.Raw));

    private void Run<T>(T ops)
        where T : struct, IAllocatorOps
    {
        nuint[] sizes = _sizes;
        void* p = ops.Malloc(sizes[0]);
        for (int i = 1; i < sizes.Length; i++)
        {
            p = ops.Realloc(p, sizes[i]);
        }

        ops.Free(p);
    }
}
