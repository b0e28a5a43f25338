// HookChain: the memory service set up from configuration through DI, a hook of your own chained on the mem
// domain (PEP 445 use case 3), and the per-domain accounting before and after.
//
//   dotnet run --project samples/HookChain [-- --RuntimeMemory:Allocator=malloc]

using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Runtime.Memory;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Hosting;
using Runtime.Memory.Samples;

IConfiguration configuration = new ConfigurationBuilder()
    .AddInMemoryCollection(new Dictionary<string, string?> { ["RuntimeMemory:Allocator"] = "default" })
    .AddCommandLine(args)
    .Build();

var services = new ServiceCollection();
services.AddSingleton(configuration);
services.AddRuntimeMemory();
using ServiceProvider provider = services.BuildServiceProvider();
IRuntimeMemory runtime = provider.ValidateRuntimeMemory(); // a bad setting stops here with a clear message

// Wrap whatever allocator mem has: the hook sees every call and forwards it.
var histogram = new SizeHistogramHook();
runtime.Mem.InstallHook(histogram);
Console.WriteLine($"mem chain with the hook: {runtime.Mem.DescribeChain()}");

unsafe
{
    var blocks = new List<nint>();
    for (int i = 0; i < 1000; i++)
    {
        blocks.Add((nint)runtime.Mem.Malloc((nuint)(i % 300)));
    }

    void* grown = runtime.Mem.Realloc((void*)blocks[0], 4096);
    blocks[0] = (nint)grown;

    Console.WriteLine("live while the blocks are held:");
    Console.Write(StatisticsReport.Format(runtime.GetStatistics()));

    foreach (nint p in blocks)
    {
        runtime.Mem.Free((void*)p);
    }
}

runtime.Mem.RemoveHook(histogram);
Console.WriteLine($"mem chain after removing it: {runtime.Mem.DescribeChain()}");
Console.WriteLine("requests seen by the hook, by size class:");
foreach (var (upTo, count) in histogram.Buckets())
{
    Console.WriteLine($"  <= {upTo,5} bytes: {count,5}");
}

Console.WriteLine("after freeing everything:");
Console.Write(StatisticsReport.Format(runtime.GetStatistics()));
return runtime.GetStatistics().LiveBlocks == 0 ? 0 : 1;
