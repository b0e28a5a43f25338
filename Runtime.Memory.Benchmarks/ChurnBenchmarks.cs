using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>churn</c>: a steady state of 100,000 live blocks. Each step frees a random live block and allocates a new one
/// of a precomputed size (sizes as in <c>batch</c>) into its slot, so the allocator keeps reusing freed memory while
/// its heap stays full. ns per step (one free and one malloc).
/// </summary>
/// <remarks>
/// Every invocation is self-contained, with no [IterationSetup]: it allocates the 100,000 live blocks, runs the
/// 100,000 steps, then frees everything. That fill and teardown (100,000 mallocs and 100,000 frees) is inside the
/// measured time and is spread over the steps by <c>OperationsPerInvoke = Steps</c>: it is the same amount of work
/// for every allocator, so the comparison holds, but the absolute ns per step include roughly one extra
/// malloc/free pair per step (fill and teardown are about as many operations as the steps themselves).
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("churn")]
public unsafe class ChurnBenchmarks
{
    private const int Live = 100_000;
    internal const int Steps = 100_000;
    private nuint[] _initialSizes = null!;
    private nuint[] _stepSizes = null!;
    private int[] _victims = null!;
    private readonly nint[] _blocks = new nint[Live];
    private RuntimeMemory _runtime = null!;
    private RuntimeMemory _debug = null!;
    private RuntimeMemory _debugNoQuarantine = null!;
    private RuntimeMemory _traced = null!;
    private RuntimeMemory _sampled = null!;
    private RuntimeMemory _listened = null!;
    private IDisposable _listening = null!;
    private RuntimeMemory _budgeted = null!;

    [GlobalSetup]
    public void Setup()
    {
        SetupWorkload();
        _runtime = RuntimeMemory.Create();
        _debug = RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug });
        _debugNoQuarantine = RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug, Debug = { QuarantineBytes = 0 } });
        _traced = TracingSetup.Traced();
        _sampled = TracingSetup.Traced(TracingSetup.SampleBytes);
        (_listened, _listening) = ObservabilitySetup.Listened();
        _budgeted = ObservabilitySetup.Budgeted();
    }

    /// <summary>The sizes and victims alone (fixed seeds), for the loops that run <see cref="RunOn"/> outside BenchmarkDotNet.</summary>
    internal void SetupWorkload()
    {
        // Fixed seeds: every allocator and every run sees the same sizes and the same victims.
        _initialSizes = Sizes.Mixed(Live, seed: 3);
        _stepSizes = Sizes.Mixed(Steps, seed: 4);
        _victims = new int[Steps];
        var rng = new Random(5);
        for (int i = 0; i < Steps; i++)
        {
            _victims[i] = rng.Next(Live);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _runtime.Dispose();
        _debug.Dispose();
        _debugNoQuarantine.Dispose();
        _traced.Dispose();
        _sampled.Dispose();
        _listening.Dispose();
        _listened.Dispose();
        _budgeted.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Steps, Description = "glibc")]
    public void Glibc() => Run(new GlibcOps());

    [Benchmark(OperationsPerInvoke = Steps, Description = "mimalloc")]
    public void Mimalloc()
    {
        if (Peers.CheckMimalloc())
        {
            Run(new MimallocOps());
        }
    }

    [Benchmark(OperationsPerInvoke = Steps, Description = "tcmalloc")]
    public void Tcmalloc()
    {
        if (Peers.CheckTcmalloc())
        {
            Run(new TcmallocOps());
        }
    }

    [Benchmark(OperationsPerInvoke = Steps, Description = "obj domain")]
    public void ObjDomain() => Run(new DomainOps(_runtime.Obj));

    /// <summary>The same steps through the raw domain: on the default allocators, the system allocator behind the domain's
    /// front door and accounting, to set against "glibc".</summary>
    [Benchmark(OperationsPerInvoke = Steps, Description = "raw domain")]
    public void RawDomain() => Run(new DomainOps(_runtime.Raw));

    /// <summary>The same under the debug hooks (<c>pymalloc_debug</c>). Guard pages are not measured here: 100,000 live
    /// blocks need more kernel mappings than Linux allows a process by default.</summary>
    [Benchmark(OperationsPerInvoke = Steps, Description = "obj domain + debug hooks")]
    public void ObjDomainDebug() => Run(new DomainOps(_debug.Obj));

    /// <summary>The same without the quarantine of freed blocks (<c>QuarantineBytes = 0</c>).</summary>
    [Benchmark(OperationsPerInvoke = Steps, Description = "obj domain + debug hooks, no quarantine")]
    public void ObjDomainDebugNoQuarantine() => Run(new DomainOps(_debugNoQuarantine.Obj));

    /// <summary>The same while tracing every block with 1 frame (tracemalloc's default).</summary>
    [Benchmark(OperationsPerInvoke = Steps, Description = "obj domain + tracing (1 frame)")]
    public void ObjDomainTraced()
    {
        TracingSetup.EnterBenchFrame();
        Run(new DomainOps(_traced.Obj));
    }

    /// <summary>The same while tracing a sample of one block per 512 KiB.</summary>
    [Benchmark(OperationsPerInvoke = Steps, Description = "obj domain + tracing, sampled (512 KiB)")]
    public void ObjDomainSampled()
    {
        TracingSetup.EnterBenchFrame();
        Run(new DomainOps(_sampled.Obj));
    }

    /// <summary>The same with the <c>Runtime.Memory</c> meter listened to and collected every 100 ms.</summary>
    [Benchmark(OperationsPerInvoke = Steps, Description = "obj domain + metrics listened")]
    public void ObjDomainListened() => Run(new DomainOps(_listened.Obj));

    /// <summary>The same with a budget (1 GiB, never reached).</summary>
    [Benchmark(OperationsPerInvoke = Steps, Description = "obj domain + budget")]
    public void ObjDomainBudgeted() => Run(new DomainOps(_budgeted.Obj));

    /// <summary>One invocation on <paramref name="domain"/>, outside BenchmarkDotNet (<see cref="TracingLoop"/>).</summary>
    internal void RunOn(MemoryDomain domain) => Run(new DomainOps(domain));

    private void Run<T>(T ops)
        where T : struct, IAllocatorOps
    {
        nint[] blocks = _blocks;

        // Fill: the live set (measured, amortised over the steps; see remarks).
        for (int i = 0; i < Live; i++)
        {
            blocks[i] = (nint)ops.Malloc(_initialSizes[i]);
        }

        // The steps: free a random live block, allocate its replacement in the same slot.
        for (int s = 0; s < Steps; s++)
        {
            int victim = _victims[s];
            ops.Free((void*)blocks[victim]);
            blocks[victim] = (nint)ops.Malloc(_stepSizes[s]);
        }

        // Teardown: free the live set (measured, amortised as the fill).
        for (int i = 0; i < Live; i++)
        {
            ops.Free((void*)blocks[i]);
        }
    }
}
