using BenchmarkDotNet.Attributes;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>xthread</c>: producer/consumer. The benchmark thread allocates blocks (sizes as in batch) in batches of 1,000
/// and hands each batch to a consumer thread that frees it, double-buffered so both work at once; 100,000 blocks per
/// invocation, ns per block. Every free is a free from another thread than the one that allocated, so this measures
/// the allocators' remote-free path (for ours: thread-free lists collected by the owning heap). The handoff is two
/// preallocated buffers and four SemaphoreSlims, so no managed allocation happens per block or per batch.
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("xthread")]
public unsafe class XThreadBenchmarks
{
    private const int BatchSize = 1000;
    private const int Batches = 100; // must stay even: the consumer's slot counter runs on across invocations
    private readonly nuint[] _sizes = Sizes.Mixed(BatchSize * Batches, seed: 6);
    private readonly nint[][] _buffers = [new nint[BatchSize], new nint[BatchSize]];
    private readonly SemaphoreSlim[] _full = [new(0), new(0)];
    private readonly SemaphoreSlim[] _empty = [new(1), new(1)];
    private Thread _consumer = null!;
    private volatile int _mode; // which allocator the consumer frees with: 0 glibc, 1 mimalloc, 2 obj domain, 3 tcmalloc, 4 raw domain, -1 stop
    private RuntimeMemory _runtime = null!;

    [GlobalSetup]
    public void Setup()
    {
        _runtime = RuntimeMemory.Create();
        _consumer = new Thread(Consume) { IsBackground = true, Name = "xthread consumer" };
        _consumer.Start();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _mode = -1;
        _full[0].Release();
        _consumer.Join();
        _runtime.Dispose();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = BatchSize * Batches, Description = "glibc")]
    public void Glibc() => Produce(new GlibcOps(), 0);

    [Benchmark(OperationsPerInvoke = BatchSize * Batches, Description = "mimalloc")]
    public void Mimalloc()
    {
        if (Peers.CheckMimalloc())
        {
            Produce(new MimallocOps(), 1);
        }
    }

    [Benchmark(OperationsPerInvoke = BatchSize * Batches, Description = "tcmalloc")]
    public void Tcmalloc()
    {
        if (Peers.CheckTcmalloc())
        {
            Produce(new TcmallocOps(), 3);
        }
    }

    [Benchmark(OperationsPerInvoke = BatchSize * Batches, Description = "obj domain")]
    public void ObjDomain() => Produce(new DomainOps(_runtime.Obj), 2);

    /// <summary>The same through the raw domain: on the default allocators, the system allocator behind the domain's
    /// front door and accounting (the remote free is glibc's), to set against "glibc".</summary>
    [Benchmark(OperationsPerInvoke = BatchSize * Batches, Description = "raw domain")]
    public void RawDomain() => Produce(new DomainOps(_runtime.Raw), 4);

    private void Produce<T>(T ops, int mode)
        where T : struct, IAllocatorOps
    {
        _mode = mode;
        for (int b = 0; b < Batches; b++)
        {
            int slot = b & 1;
            _empty[slot].Wait();
            nint[] buffer = _buffers[slot];
            int offset = b * BatchSize;
            for (int i = 0; i < BatchSize; i++)
            {
                buffer[i] = (nint)ops.Malloc(_sizes[offset + i]);
            }

            _full[slot].Release();
        }

        // Wait until the consumer has freed both buffers, so an invocation's frees are inside its time.
        _empty[0].Wait();
        _empty[1].Wait();
        _empty[0].Release();
        _empty[1].Release();
    }

    private void Consume()
    {
        for (int b = 0; ; b++)
        {
            int slot = b & 1;
            _full[slot].Wait();
            int mode = _mode;
            if (mode < 0)
            {
                return;
            }

            nint[] buffer = _buffers[slot];
            switch (mode)
            {
                case 0: FreeAll(new GlibcOps(), buffer); break;
                case 1: FreeAll(new MimallocOps(), buffer); break;
                case 3: FreeAll(new TcmallocOps(), buffer); break;
                case 4: FreeAll(new DomainOps(_runtime.Raw), buffer); break;
                default: FreeAll(new DomainOps(_runtime.Obj), buffer); break;
            }

            _empty[slot].Release();
        }
    }

    private static void FreeAll<T>(T ops, nint[] buffer)
        where T : struct, IAllocatorOps
    {
        for (int i = 0; i < buffer.Length; i++)
        {
            ops.Free((void*)buffer[i]);
        }
    }
}
