using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>batch</c>: 100,000 blocks of 8–512 B (80 % in 16–64 B) allocated, then all freed in a fixed shuffled order;
/// ns per block (one malloc and one free).
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("batch")]
public unsafe class BatchBenchmarks
{
    private const int Blocks = 100_000;
    private readonly nuint[] _sizes = Sizes.Mixed(Blocks, seed: 1);
    private readonly int[] _freeOrder = Enumerable.Range(0, Blocks).ToArray();
    private readonly nint[] _blocks = new nint[Blocks];
    private RuntimeMemory _runtime = null!;

    [GlobalSetup]
    public void Setup()
    {
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

    [Benchmark(OperationsPerInvoke = Blocks, Description = "obj domain")]
    public void ObjDomain() => Run(new DomainOps(_runtime.Obj));

    private void Run<T>(T ops)
        where T : struct, IAllocatorOps
    {
        for (int i = 0; i < Blocks; i++)
        {
            _blocks[i] = (nint)ops.Malloc(_sizes[i]);
        }

        foreach (int i in _freeOrder)
        {
            ops.Free((void*)_blocks[i]);
        }
    }
}
