using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary><c>grow</c>: one block reallocated from 16 B to 64 KiB by 1.125× steps, then freed; ns per realloc.</summary>
[MemoryDiagnoser]
[BenchmarkCategory("grow")]
public unsafe class GrowBenchmarks
{
    private static readonly nuint[] Steps = BuildSteps();
    private RuntimeMemory _runtime = null!;

    [GlobalSetup]
    public void Setup() => _runtime = RuntimeMemory.Create();

    [GlobalCleanup]
    public void Cleanup() => _runtime.Dispose();

    private static nuint[] BuildSteps()
    {
        var steps = new List<nuint>();
        for (double size = 16; size <= 64 * 1024; size *= 1.125)
        {
            steps.Add((nuint)size);
        }

        return [.. steps];
    }

    /// <summary>Reallocs per invocation: 16 × 1.125^n ≤ 65,536 for n = 1..70.</summary>
    public const int Reallocs = 70;

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

    [Benchmark(OperationsPerInvoke = Reallocs, Description = "obj domain")]
    public void ObjDomain() => Run(new DomainOps(_runtime.Obj));

    private static void Run<T>(T ops)
        where T : struct, IAllocatorOps
    {
        System.Diagnostics.Debug.Assert(Steps.Length == Reallocs + 1, "Reallocs must match the step table");
        void* p = ops.Malloc(Steps[0]);
        for (int i = 1; i < Steps.Length; i++)
        {
            p = ops.Realloc(p, Steps[i]);
        }

        ops.Free(p);
    }
}
