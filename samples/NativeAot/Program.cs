// NativeAot: the memory service on the .NET generic host, the way a host wires it, in a program that NativeAOT can
// compile: appsettings.json, environment variables and switches -> AddRuntimeMemory (bound by the configuration binding
// source generator, no reflection), blocks in each domain, budgets, tracing, the statistics table, a pprof profile and
// a flame graph, and zlib routed into the raw domain.
//
//   dotnet run --project samples/NativeAot
//   dotnet publish samples/NativeAot -c Release -r linux-x64 -p:PublishAot=true -o out/native-aot
//   out/native-aot/NativeAot                                        (exit 0: the table, nothing left live)
//   out/native-aot/NativeAot --RuntimeMemory:Allocator=bogus        (exit 2: key, value, allowed values)
using System.Runtime.CompilerServices;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Runtime.Memory;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Extensions.Zlib;
using Runtime.Memory.Hosting;
using Runtime.Memory.Tracing;

HostApplicationBuilder builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
{
    Args = args,
    ContentRootPath = AppContext.BaseDirectory, // appsettings.json next to the program, wherever it is started from
});
builder.Services.AddRuntimeMemory();
using IHost host = builder.Build();

IRuntimeMemory runtime;
try
{
    runtime = host.Services.ValidateRuntimeMemory();
}
catch (OptionsValidationException ex)
{
    foreach (string failure in ex.Failures)
    {
        Console.Error.WriteLine($"configuration error: {failure}");
    }

    return 2;
}

Console.WriteLine($"runtime: {(RuntimeFeature.IsDynamicCodeSupported ? "JIT" : "NativeAOT")}; allocator '{runtime.AllocatorName}'; "
    + $"tracing {(runtime.Tracer.IsTracing ? "on" : "off")}; mem budget {runtime.Mem.MaxBytes?.ToString("N0") ?? "none"} bytes");

// Blocks of many sizes in each domain: malloc, calloc, realloc; then free half of them.
var blocks = new List<(MemoryDomain Domain, nint Block)>();
int refused = 0;
unsafe
{
    foreach (MemoryDomain domain in new[] { runtime.Raw, runtime.Mem, runtime.Obj })
    {
        for (int i = 0; i < 1000; i++)
        {
            nuint size = (nuint)(8 + (i * 37 % 2048));
            void* p = i % 3 == 0 ? domain.Calloc(size, 1) : domain.Malloc(size);
            if (p != null && i % 5 == 0 && domain.Realloc(p, size * 2) is var grown && grown != null)
            {
                p = grown; // a refused realloc leaves the block as it was
            }

            if (p == null)
            {
                refused++;
                continue;
            }

            blocks.Add((domain, (nint)p));
        }
    }
}

if (runtime.Tracer.IsTracing)
{
    TraceStatistic biggest = runtime.Tracer.TakeSnapshot().Statistics(TraceGrouping.Traceback)[0];
    Console.WriteLine($"biggest allocation site: {biggest}");
    Console.WriteLine(string.Join('\n', biggest.Traceback.Format()));

    // The pictures of the heap under NativeAOT: the pprof profile (Google.Protobuf) and the SVG flame graph.
    TraceSnapshot heap = runtime.Tracer.TakeSnapshot();
    using var profile = new MemoryStream();
    heap.WriteProfile(profile);
    var flame = new StringWriter();
    heap.WriteFlameGraph(flame);
    Console.WriteLine($"pprof profile: {profile.Length:N0} bytes (gzip); flame graph: {flame.ToString().Length:N0} characters of SVG");
}

// A native library routed into the runtime under NativeAOT: the system's zlib, its allocations in raw under "zlib"
// (LibraryImport and unmanaged function pointers: nothing for the trimmer to keep alive by reflection).
bool zlibRoundTrip = ZlibRoundTrip(runtime);
Console.WriteLine(zlibRoundTrip
    ? $"zlib: 64 KiB deflated and inflated, identical; account after the streams ended: {runtime.Tag("zlib")}"
    : "zlib: the round trip failed");

unsafe
{
    for (int i = 0; i < blocks.Count; i += 2)
    {
        blocks[i].Domain.Free((void*)blocks[i].Block);
    }
}

Console.WriteLine($"{blocks.Count:N0} blocks allocated, {refused} refused by a budget; half of them freed:");
Console.Write(StatisticsReport.Format(runtime.GetStatistics()));

unsafe
{
    for (int i = 1; i < blocks.Count; i += 2)
    {
        blocks[i].Domain.Free((void*)blocks[i].Block);
    }
}

long live = runtime.GetStatistics().LiveBlocks;
Console.WriteLine($"after freeing the rest: {live} live blocks");
return live == 0 && blocks.Count > 0 && zlibRoundTrip ? 0 : 1;

static unsafe bool ZlibRoundTrip(IRuntimeMemory runtime)
{
    using var route = new ZlibRouting(runtime); // raw domain, tag "zlib"
    byte[] data = new byte[64 * 1024];
    for (int i = 0; i < data.Length; i++)
    {
        data[i] = (byte)(i % 251 ^ i / 1024);
    }

    byte[] packed = new byte[data.Length + 1024];
    byte[] unpacked = new byte[data.Length];
    fixed (byte* version = System.Text.Encoding.ASCII.GetBytes(ZlibNative.EnsureAvailable() + "\0"))
    fixed (byte* input = data, output = packed, back = unpacked)
    {
        ZStream stream = default;
        route.Attach(&stream);
        if (ZlibNative.DeflateInit2(&stream, 6, ZlibNative.Deflated, 15, 8, 0, version, sizeof(ZStream)) != ZlibNative.Ok)
        {
            return false;
        }

        stream.NextIn = input;
        stream.AvailIn = (uint)data.Length;
        stream.NextOut = output;
        stream.AvailOut = (uint)packed.Length;
        int status = ZlibNative.Deflate(&stream, ZlibNative.Finish);
        uint packedLength = (uint)packed.Length - stream.AvailOut;
        ZlibNative.DeflateEnd(&stream);
        if (status != ZlibNative.StreamEnd)
        {
            return false;
        }

        stream = default;
        route.Attach(&stream);
        if (ZlibNative.InflateInit2(&stream, 15, version, sizeof(ZStream)) != ZlibNative.Ok)
        {
            return false;
        }

        stream.NextIn = output;
        stream.AvailIn = packedLength;
        stream.NextOut = back;
        stream.AvailOut = (uint)unpacked.Length;
        status = ZlibNative.Inflate(&stream, ZlibNative.Finish);
        ZlibNative.InflateEnd(&stream);
        return status == ZlibNative.StreamEnd && stream.AvailOut == 0 && data.AsSpan().SequenceEqual(unpacked)
            && runtime.Tag("zlib").LiveBlocks == 0;
    }
}
