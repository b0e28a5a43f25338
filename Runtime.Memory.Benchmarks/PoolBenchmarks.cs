using System.Buffers;
using BenchmarkDotNet.Attributes;
using Runtime.Memory.Buffers;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>pool4k</c>: a 4 KiB buffer taken and given back, repeated; ns per pair. The rows: a raw <c>Obj.Malloc(4096)</c> +
/// <c>Free</c> (our plain row), the same through the safe API (<c>Obj.AsMemoryPool().Rent(4096)</c> + <c>Dispose</c>,
/// issue 28's target: at most 1.5× the raw pair), glibc (baseline), and <see cref="ArrayPool{T}.Shared"/> for reference
/// (managed arrays, cached per thread: not native memory, not accounted).
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("pool4k")]
public unsafe class PoolBenchmarks
{
    public const int Size = 4096;
    private const int Pairs = 1000;
    private RuntimeMemory _runtime = null!;
    private MemoryPool<byte> _pool = null!;

    [GlobalSetup]
    public void Setup()
    {
        _runtime = RuntimeMemory.Create();
        _pool = _runtime.Obj.AsMemoryPool();
    }

    [GlobalCleanup]
    public void Cleanup() => _runtime.Dispose();

    [Benchmark(Baseline = true, OperationsPerInvoke = Pairs, Description = "glibc")]
    public void Glibc()
    {
        for (int i = 0; i < Pairs; i++)
        {
            Peers.GlibcFree(Peers.GlibcMalloc(Size));
        }
    }

    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain")]
    public void ObjDomain() => RawPairs(_runtime.Obj, Pairs);

    [Benchmark(OperationsPerInvoke = Pairs, Description = "obj domain: MemoryPool Rent + Dispose")]
    public void ObjPool() => PoolPairs(_pool, Pairs);

    [Benchmark(OperationsPerInvoke = Pairs, Description = "ArrayPool<byte>.Shared Rent + Return")]
    public void SharedArrayPool() => ArrayPoolPairs(Pairs);

    /// <summary><paramref name="pairs"/> raw pairs of <see cref="Size"/> bytes on <paramref name="domain"/>.</summary>
    public static void RawPairs(MemoryDomain domain, int pairs)
    {
        for (int i = 0; i < pairs; i++)
        {
            domain.Free(domain.Malloc(Size));
        }
    }

    /// <summary><paramref name="pairs"/> rentals of <see cref="Size"/> bytes, each disposed, as a caller of a
    /// <see cref="MemoryPool{T}"/> makes them (virtual Rent, interface Dispose).</summary>
    public static void PoolPairs(MemoryPool<byte> pool, int pairs)
    {
        for (int i = 0; i < pairs; i++)
        {
            pool.Rent(Size).Dispose();
        }
    }

    /// <summary><paramref name="pairs"/> rentals of <see cref="Size"/> bytes from <see cref="ArrayPool{T}.Shared"/>.</summary>
    public static void ArrayPoolPairs(int pairs)
    {
        for (int i = 0; i < pairs; i++)
        {
            ArrayPool<byte>.Shared.Return(ArrayPool<byte>.Shared.Rent(Size));
        }
    }
}
