using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary><c>pair64</c>: malloc(64) then free, repeated; ns per pair. Baseline glibc.</summary>
[MemoryDiagnoser]
[BenchmarkCategory("pair64")]
public unsafe class Pair64Benchmarks
{
    private const int Pairs = 1000;
    private RuntimeMemory _runtime = null!;

    [GlobalSetup]
    public void Setup() => _runtime = RuntimeMemory.Create();

    [GlobalCleanup]
    public void Cleanup() => _runtime.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = Pairs, Description = "glibc")]
    public void Glibc() => Run(new GlibcOps());

    [Benchmark(OperationsPerInvoke = Pairs, Description = "mimalloc")]
    public void Mimalloc()
    {
        if (Peers.CheckMimalloc())
        {
            Run(new MimallocOps());
        }
    }

    [Benchmark(OperationsPerInvoke = Pairs, Description = "tcmalloc")]
    public void Tcmalloc()
    {
        if (Peers.CheckTcmalloc())
        {
            Run(new TcmallocOps());
        }
    }

    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain")]
    public void ObjDomain() => Run(new DomainOps(_runtime.Obj));

    /// <summary>Malloc(64) and free through the raw domain: on the default allocators, the system allocator behind the domain's
    /// front door and accounting, to set against "glibc".</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "raw domain")]
    public void RawDomain() => Run(new DomainOps(_runtime.Raw));

    private static void Run<T>(T ops)
        where T : struct, IAllocatorOps
    {
        for (int i = 0; i < Pairs; i++)
        {
            ops.Free(ops.Malloc(64));
        }
    }
}
