using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>churn</c>: 1,000 blocks of 16..512 bytes (an interpreter's object sizes) allocated, then freed in a fixed
/// shuffled order, so frees do not mirror allocations. Reported per block (one malloc plus one free).
/// </summary>
[MemoryDiagnoser]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
[BenchmarkCategory("churn")]
public unsafe class ChurnBenchmarks
{
    private const int Blocks = 1000;
    private readonly nuint[] _sizes = new nuint[Blocks];
    private readonly int[] _freeOrder = new int[Blocks];
    private readonly nint[] _blocks = new nint[Blocks];
    private RuntimeMemory _runtime = null!;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(42);
        for (int i = 0; i < Blocks; i++)
        {
            _sizes[i] = (nuint)(16 * rng.Next(1, 33));
            _freeOrder[i] = i;
        }

        rng.Shuffle(_freeOrder);
        _runtime = RuntimeMemory.Create();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Blocks, Description = "glibc malloc/free")]
    public void Glibc()
    {
        for (int i = 0; i < Blocks; i++)
        {
            _blocks[i] = (nint)Peers.GlibcMalloc(_sizes[i]);
        }

        foreach (int i in _freeOrder)
        {
            Peers.GlibcFree((void*)_blocks[i]);
        }
    }

    [Benchmark(OperationsPerInvoke = Blocks, Description = "mimalloc mi_malloc/mi_free")]
    public void Mimalloc()
    {
        if (!Peers.HasMimalloc)
        {
            return;
        }

        for (int i = 0; i < Blocks; i++)
        {
            _blocks[i] = (nint)Peers.MiMalloc(_sizes[i]);
        }

        foreach (int i in _freeOrder)
        {
            Peers.MiFree((void*)_blocks[i]);
        }
    }

    [Benchmark(OperationsPerInvoke = Blocks, Description = "obj domain (malloc + accounting)")]
    public void ObjDomain()
    {
        MemoryDomain obj = _runtime.Obj;
        for (int i = 0; i < Blocks; i++)
        {
            _blocks[i] = (nint)obj.Malloc(_sizes[i]);
        }

        foreach (int i in _freeOrder)
        {
            obj.Free((void*)_blocks[i]);
        }
    }
}
