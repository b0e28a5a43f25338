// ZlibRouting: the system's zlib compressing 8 MiB with every allocation it makes routed into the runtime's raw
// domain and accounted under the tag "zlib"; the per-library accounting while the streams are open and after.
//
//   dotnet run --project samples/ZlibRouting

using System.Text;
using Runtime.Memory;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Extensions;
using Runtime.Memory.Extensions.Zlib;

string version = ZlibNative.EnsureAvailable(); // a missing libz.so.1 is reported here, naming the files tried
using RuntimeMemory runtime = RuntimeMemory.Create();
using var route = new ZlibRouting(runtime); // raw domain, tag "zlib"
Console.WriteLine($"zlib {version}, routed into the {route.Domain.Name} domain under the tag '{route.Account.Tag}'");

byte[] input = Encoding.ASCII.GetBytes(string.Concat(Enumerable.Range(0, 400_000).Select(i => $"block {i % 977} of arena {i % 13}\n")));
byte[] packed = new byte[input.Length + 1024];
byte[] unpacked = new byte[input.Length];
byte[] zlibVersion = [.. Encoding.ASCII.GetBytes(version), 0];

unsafe
{
    ZStream deflate = default, inflate = default;
    route.Attach(&deflate);
    route.Attach(&inflate);
    fixed (byte* v = zlibVersion)
    fixed (byte* source = input)
    fixed (byte* compressed = packed)
    fixed (byte* target = unpacked)
    {
        Check(ZlibNative.DeflateInit2(&deflate, 6, ZlibNative.Deflated, 15, 8, 0, v, sizeof(ZStream)), "deflateInit2_");
        Console.WriteLine($"after deflateInit2_:  {route.Account}");
        deflate.NextIn = source;
        deflate.AvailIn = (uint)input.Length;
        deflate.NextOut = compressed;
        deflate.AvailOut = (uint)packed.Length;
        Check(ZlibNative.Deflate(&deflate, ZlibNative.Finish), "deflate", ZlibNative.StreamEnd);
        uint packedLength = (uint)packed.Length - deflate.AvailOut;

        Check(ZlibNative.InflateInit2(&inflate, 15, v, sizeof(ZStream)), "inflateInit2_");
        inflate.NextIn = compressed;
        inflate.AvailIn = packedLength;
        inflate.NextOut = target;
        inflate.AvailOut = (uint)unpacked.Length;
        Check(ZlibNative.Inflate(&inflate, ZlibNative.Finish), "inflate", ZlibNative.StreamEnd);
        Console.WriteLine($"both streams open:    {route.Account}");
        Console.WriteLine($"{input.Length:N0} bytes -> {packedLength:N0} compressed -> {(unpacked.AsSpan().SequenceEqual(input) ? "identical" : "DIFFERENT")}");

        Check(ZlibNative.DeflateEnd(&deflate), "deflateEnd");
        Check(ZlibNative.InflateEnd(&inflate), "inflateEnd");
    }
}

Console.WriteLine($"after the ends:       {route.Account}");
Console.Write(StatisticsReport.Format(runtime.GetStatistics()));
return route.Account.LiveBlocks == 0 && runtime.GetStatistics().LiveBlocks == 0 && unpacked.AsSpan().SequenceEqual(input) ? 0 : 1;

static void Check(int status, string call, int expected = ZlibNative.Ok)
{
    if (status != expected)
    {
        throw new InvalidOperationException($"{call} returned {status}");
    }
}
