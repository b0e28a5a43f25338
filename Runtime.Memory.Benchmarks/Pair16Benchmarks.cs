using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>pair16</c>: malloc(16) immediately followed by free, the tightest allocator loop. Reported per pair.
/// Baseline: glibc malloc/free through a function pointer.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("pair16")]
public unsafe class Pair16Benchmarks
{
    private const int Pairs = 1000;
    private RuntimeMemory _plain = null!;
    private RuntimeMemory _hooked = null!;
    private readonly SystemAllocator _system = new();
    private readonly Runtime.Memory.Accounting.MemoryAccounting _accounting = new();

    [GlobalCleanup]
    public void Cleanup()
    {
        _plain.Dispose();
        _hooked.Dispose();
    }

    [GlobalSetup]
    public void Setup()
    {
        _plain = RuntimeMemory.Create();
        _hooked = RuntimeMemory.Create();
        _hooked.Obj.InstallHook(new PassThroughHook());
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

    [Benchmark(OperationsPerInvoke = Pairs, Description = "NativeMemory.Alloc/Free")]
    public void NativeMemoryAllocFree()
    {
        for (int i = 0; i < Pairs; i++)
        {
            NativeMemory.Free(NativeMemory.Alloc(16));
        }
    }

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

    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain + pass-through hook")]
    public void ObjDomainWithHook()
    {
        MemoryDomain obj = _hooked.Obj;
        for (int i = 0; i < Pairs; i++)
        {
            obj.Free(obj.Malloc(16));
        }
    }
}
