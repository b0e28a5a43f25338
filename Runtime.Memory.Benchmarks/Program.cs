using BenchmarkDotNet.Running;
using Runtime.Memory.Benchmarks;

// dotnet run -c Release --project Runtime.Memory.Benchmarks -- --filter '*'      every timing workload
// dotnet run -c Release --project Runtime.Memory.Benchmarks -- --footprint       resident memory per allocator
if (args is ["--footprint"])
{
    return Footprint.RunAll();
}

if (args is ["--footprint-one", var allocator])
{
    return Footprint.RunOne(allocator);
}

BenchmarkSwitcher.FromAssembly(typeof(Peers).Assembly).Run(args);
return 0;
