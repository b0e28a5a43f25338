using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>batch</c>: 100,000 blocks of 8–512 B (80 % in 16–64 B) all allocated, then all freed in a fixed shuffled
/// order, so frees do not follow allocation order. ns per block (one malloc and one free).
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("batch")]
public unsafe class BatchBenchmarks
{
    private const int Blocks = 100_000;
    private nuint[] _sizes = null!;
    private int[] _freeOrder = null!;
    private readonly nint[] _blocks = new nint[Blocks];
    private RuntimeMemory _runtime = null!;

    [GlobalSetup]
    public void Setup()
    {
        // Generated once, with fixed seeds: the same sizes and the same free order for every allocator and run.
        _sizes = Sizes.Mixed(Blocks, seed: 1);
        _freeOrder = Enumerable.Range(0, Blocks).ToArray();
        new Random(2).Shuffle(_freeOrder);
        _runtime = RuntimeMemory.Create();
    }

    [GlobalCleanup]
    public void Cleanup() => _runtime.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = Blocks, Description = "glibc")]
    public void Glibc() => Run(new GlibcOps());

    [Benchmark(OperationsPerInvoke = Blocks, Description = "mimalloc")]
    public void Mimalloc()
    {
        if (Peers.CheckMimalloc())
        {
            Run(new MimallocOps());
        }
    }

    [Benchmark(OperationsPerInvoke = Blocks, Description = "tcmalloc")]
    public void Tcmalloc()
    {
        if (Peers.CheckTcmalloc())
        {
            Run(new TcmallocOps());
        }
    }

    [Benchmark(OperationsPerInvoke = Blocks, Description = "obj domain")]
    public void ObjDomain() => Run(new DomainOps(_runtime.Obj));

    /// <summary>The same blocks and free order through the raw domain: on the default allocators, the system allocator behind the domain's
    /// front door and accounting, to set against "glibc".</summary>
    [Benchmark(OperationsPerInvoke = Blocks, Description = "raw domain")]
    public void RawDomain() => Run(new DomainOps(_runtime.Raw));

    private void Run<T>(T ops)
        where T : struct, IAllocatorOps
    {
        nint[] blocks = _blocks;
        nuint[] sizes = _sizes;
        for (int i = 0; i < blocks.Length; i++)
        {
            blocks[i] = (nint)ops.Malloc(sizes[i]);
        }

        foreach (int i in _freeOrder)
        {
            ops.Free((void*)blocks[i]);
        }
    }
}
