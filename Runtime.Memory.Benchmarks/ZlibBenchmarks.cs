using BenchmarkDotNet.Attributes;
using Runtime.Memory.Extensions;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>zlib</c>: compressing 64 MiB with the system's zlib (level 6), once with zlib's own allocator (zalloc = NULL:
/// malloc/free) and once with every allocation routed into the <c>raw</c> domain and accounted under the tag
/// <c>zlib</c>. Seconds per 64 MiB; the target is routed ÷ own ≤ 1.03. Run it with
/// <c>--anyCategories zlib --warmupCount 2 --iterationCount 7</c> (each operation takes seconds).
/// </summary>
[MemoryDiagnoser]
[BenchmarkCategory("zlib")]
public unsafe class ZlibBenchmarks
{
    private const int Size = 64 << 20;
    private byte[] _input = null!;
    private byte[] _output = null!;
    private byte[] _version = null!;
    private RuntimeMemory _runtime = null!;
    private ZlibRouting _route = null!;

    [GlobalSetup]
    public void Setup()
    {
        _version = [.. System.Text.Encoding.ASCII.GetBytes(ZlibNative.EnsureAvailable()), 0];
        _input = new byte[Size];
        var random = new Random(11);
        for (int i = 0; i < Size; i++)
        {
            _input[i] = (byte)(random.Next(100) < 70 ? 'a' + random.Next(8) : random.Next(256)); // compresses to about a half
        }

        _output = new byte[Size + (Size >> 8) + 1024];
        _runtime = RuntimeMemory.Create();
        _route = new ZlibRouting(_runtime);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _route.Dispose();
        _runtime.Dispose();
    }

    [Benchmark(Baseline = true, Description = "zlib's own allocator")]
    public int Own() => Compress(routed: false);

    [Benchmark(Description = "routed into raw")]
    public int Routed() => Compress(routed: true);

    private int Compress(bool routed)
    {
        var stream = default(ZStream);
        if (routed)
        {
            _route.Attach(&stream);
        }

        fixed (byte* version = _version)
        fixed (byte* input = _input)
        fixed (byte* output = _output)
        {
            Check(ZlibNative.DeflateInit2(&stream, 6, ZlibNative.Deflated, 15, 8, 0, version, sizeof(ZStream)));
            stream.NextIn = input;
            stream.AvailIn = (uint)_input.Length;
            stream.NextOut = output;
            stream.AvailOut = (uint)_output.Length;
            int status = ZlibNative.Deflate(&stream, ZlibNative.Finish);
            int produced = _output.Length - (int)stream.AvailOut;
            Check(ZlibNative.DeflateEnd(&stream));
            return status == ZlibNative.StreamEnd ? produced : throw new InvalidOperationException($"deflate returned {status}");
        }
    }

    private static void Check(int status)
    {
        if (status != ZlibNative.Ok)
        {
            throw new InvalidOperationException($"zlib returned {status}");
        }
    }
}
