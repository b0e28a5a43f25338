using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>pair16</c>: malloc(16) immediately followed by free of the same block, repeated; the tightest allocator loop.
/// ns per pair. The three main rows are "glibc" (baseline, through a function pointer), "mimalloc" (likewise) and
/// "obj domain" (ours), with "raw domain" (ours, the system allocator behind a domain); the other rows break the cost
/// of ours down: the system allocator alone, .NET's own NativeMemory, the accounting a domain does per call without
/// any allocation, and one pass-through hook.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("pair16")]
public unsafe class Pair16Benchmarks
{
    private const int Pairs = 1000;
    private RuntimeMemory _plain = null!;
    private RuntimeMemory _hooked = null!;
    private RuntimeMemory _debug = null!;
    private RuntimeMemory _debugNoQuarantine = null!;
    private RuntimeMemory _guarded = null!;
    private RuntimeMemory _traced = null!;
    private RuntimeMemory _sampled = null!;
    private RuntimeMemory _listened = null!;
    private IDisposable _listening = null!;
    private RuntimeMemory _budgeted = null!;
    private readonly SystemAllocator _system = new();
    private readonly Runtime.Memory.Accounting.MemoryAccounting _accounting = new();

    [GlobalCleanup]
    public void Cleanup()
    {
        _plain.Dispose();
        _hooked.Dispose();
        _debug.Dispose();
        _debugNoQuarantine.Dispose();
        _guarded.Dispose();
        _traced.Dispose();
        _sampled.Dispose();
        _listening.Dispose();
        _listened.Dispose();
        _budgeted.Dispose();
    }

    [GlobalSetup]
    public void Setup()
    {
        _plain = RuntimeMemory.Create();
        _hooked = RuntimeMemory.Create();
        _hooked.Obj.InstallHook(new PassThroughHook());
        _debug = RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug });
        _debugNoQuarantine = RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug, Debug = { QuarantineBytes = 0 } });
        _guarded = RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug, Debug = { GuardPages = true } });
        _traced = TracingSetup.Traced();
        _sampled = TracingSetup.Traced(TracingSetup.SampleBytes);
        (_listened, _listening) = ObservabilitySetup.Listened();
        _budgeted = ObservabilitySetup.Budgeted();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Pairs, Description = "glibc")]
    public void Glibc()
    {
        for (int i = 0; i < Pairs; i++)
        {
            Peers.GlibcFree(Peers.GlibcMalloc(16));
        }
    }

    [Benchmark(OperationsPerInvoke = Pairs, Description = "mimalloc")]
    public void Mimalloc()
    {
        if (!Peers.CheckMimalloc())
        {
            return;
        }

        for (int i = 0; i < Pairs; i++)
        {
            Peers.MiFree(Peers.MiMalloc(16));
        }
    }

    [Benchmark(OperationsPerInvoke = Pairs, Description = "tcmalloc")]
    public void Tcmalloc()
    {
        if (!Peers.CheckTcmalloc())
        {
            return;
        }

        for (int i = 0; i < Pairs; i++)
        {
            Peers.TcFree(Peers.TcMalloc(16));
        }
    }

    // ---- extra rows: where the time of "obj domain" goes ----

    /// <summary>.NET's NativeMemory (the C runtime's malloc/free through the runtime's own P/Invoke).</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "NativeMemory.Alloc/Free")]
    public void NativeMemoryAllocFree()
    {
        for (int i = 0; i < Pairs; i++)
        {
            NativeMemory.Free(NativeMemory.Alloc(16));
        }
    }

    /// <summary>Our SystemAllocator called directly: no domain, no accounting, no small-object allocator.</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "SystemAllocator (no domain)")]
    public void SystemAllocatorDirect()
    {
        for (int i = 0; i < Pairs; i++)
        {
            _system.Free(_system.Malloc(16));
        }
    }

    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain")]
    public void ObjDomain()
    {
        MemoryDomain obj = _plain.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }

    /// <summary>
    /// The raw domain (on the default allocators, the system allocator behind the domain's front door and accounting):
    /// malloc(16) and free through <c>RuntimeMemory.Raw</c>, to set against "glibc".
    /// </summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "raw domain")]
    public void RawDomain()
    {
        MemoryDomain raw = _plain.Raw;
        for (int i = 0; i < Pairs; i++)
        {
            raw.Free(raw.Malloc(16));
        }
    }

    /// <summary>
    /// Only the per-call bookkeeping (counters of domain index 2 = Obj, found through the thread's shard) as the
    /// system-allocator path of a domain does it, with no allocation at all. The small-object path passes the shard
    /// it already holds, so this is an upper bound for that path.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "accounting alone (no allocation)")]
    public void AccountingAlone()
    {
        Runtime.Memory.Accounting.MemoryAccounting accounting = _accounting;
        for (int i = 0; i < Pairs; i++)
        {
            accounting.OnAllocated(2, 16);
            accounting.OnFreed(2, 16);
        }
    }

    /// <summary>"obj domain" with one hook installed that only forwards: the cost of one level of the hook chain.</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain + pass-through hook")]
    public void ObjDomainWithHook()
    {
        MemoryDomain obj = _hooked.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }

    /// <summary>"obj domain" under the debug hooks (<c>pymalloc_debug</c>): guard bytes, fills, serial numbers, registry, and the
    /// quarantine of freed blocks (1 MiB, the default).</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain + debug hooks")]
    public void ObjDomainDebug()
    {
        MemoryDomain obj = _debug.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }

    /// <summary>The debug hooks without the quarantine of freed blocks (<c>QuarantineBytes = 0</c>): a freed block goes straight back.</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain + debug hooks, no quarantine")]
    public void ObjDomainDebugNoQuarantine()
    {
        MemoryDomain obj = _debugNoQuarantine.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }

    /// <summary>The debug hooks in guard-page mode: a mapping and a guard page per block, a quarantine of freed pages.</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain + debug hooks, guard pages")]
    public void ObjDomainGuardPages()
    {
        MemoryDomain obj = _guarded.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }

    /// <summary>"obj domain" while tracing every block with 1 frame (tracemalloc's default).</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain + tracing (1 frame)")]
    public void ObjDomainTraced()
    {
        TracingSetup.EnterBenchFrame();
        MemoryDomain obj = _traced.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }

    /// <summary>"obj domain" while tracing a sample of one block per 512 KiB.</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain + tracing, sampled (512 KiB)")]
    public void ObjDomainSampled()
    {
        TracingSetup.EnterBenchFrame();
        MemoryDomain obj = _sampled.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }

    /// <summary>"obj domain" with the <c>Runtime.Memory</c> meter listened to and collected every 100 ms.</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain + metrics listened")]
    public void ObjDomainListened()
    {
        MemoryDomain obj = _listened.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }

    /// <summary>"obj domain" with a budget (1 GiB, never reached).</summary>
    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain + budget")]
    public void ObjDomainBudgeted()
    {
        MemoryDomain obj = _budgeted.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }
}
