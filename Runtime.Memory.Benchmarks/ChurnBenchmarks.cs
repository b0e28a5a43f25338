using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>churn</c>: 100,000 live blocks; each step frees a random one and allocates a new block of a fixed random size
/// in its place. ns per step (one free and one malloc). The set of live blocks is built once per iteration in
/// [IterationSetup] (each invocation is 100,000 steps, long enough for that to be sound) and freed in
/// [IterationCleanup], so only the steps are timed.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("churn")]
[InvocationCount(1)]
public unsafe class ChurnBenchmarks
{
    private const int Live = 100_000;
    private const int Steps = 100_000;
    private readonly nuint[] _initialSizes = Sizes.Mixed(Live, seed: 3);
    private readonly nuint[] _stepSizes = Sizes.Mixed(Steps, seed: 4);
    private readonly int[] _victims = new int[Steps];
    private readonly nint[] _blocks = new nint[Live];
    private RuntimeMemory _runtime = null!;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(5);
        for (int i = 0; i < Steps; i++)
        {
            _victims[i] = rng.Next(Live);
        }

        _runtime = RuntimeMemory.Create();
    }

    [GlobalCleanup]
    public void Cleanup() => _runtime.Dispose();

    [IterationSetup(Target = nameof(Glibc))]
    public void FillGlibc() => Fill(new GlibcOps());

    [IterationCleanup(Target = nameof(Glibc))]
    public void EmptyGlibc() => Empty(new GlibcOps());

    [IterationSetup(Target = nameof(Mimalloc))]
    public void FillMimalloc()
    {
        if (Peers.CheckMimalloc())
        {
            Fill(new MimallocOps());
        }
    }

    [IterationCleanup(Target = nameof(Mimalloc))]
    public void EmptyMimalloc()
    {
        if (Peers.HasMimalloc)
        {
            Empty(new MimallocOps());
        }
    }

    [IterationSetup(Target = nameof(ObjDomain))]
    public void FillDomain() => Fill(new DomainOps(_runtime.Obj));

    [IterationCleanup(Target = nameof(ObjDomain))]
    public void EmptyDomain() => Empty(new DomainOps(_runtime.Obj));

    [Benchmark(Baseline = true, OperationsPerInvoke = Steps, Description = "glibc")]
    public void Glibc() => Run(new GlibcOps());

    [Benchmark(OperationsPerInvoke = Steps, Description = "mimalloc")]
    public void Mimalloc()
    {
        if (Peers.HasMimalloc)
        {
            Run(new MimallocOps());
        }
    }

    [Benchmark(OperationsPerInvoke = Steps, Description = "obj domain")]
    public void ObjDomain() => Run(new DomainOps(_runtime.Obj));

    private void Fill<T>(T ops)
        where T : struct, IAllocatorOps
    {
        for (int i = 0; i < Live; i++)
        {
            _blocks[i] = (nint)ops.Malloc(_initialSizes[i]);
        }
    }

    private void Empty<T>(T ops)
        where T : struct, IAllocatorOps
    {
        for (int i = 0; i < Live; i++)
        {
            ops.Free((void*)_blocks[i]);
        }
    }

    private void Run<T>(T ops)
        where T : struct, IAllocatorOps
    {
        for (int s = 0; s < Steps; s++)
        {
            int victim = _victims[s];
            ops.Free((void*)_blocks[victim]);
            _blocks[victim] = (nint)ops.Malloc(_stepSizes[s]);
        }
    }
}
