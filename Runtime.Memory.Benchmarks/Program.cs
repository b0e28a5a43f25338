using BenchmarkDotNet.Running;

// dotnet run -c Release --project Runtime.Memory.Benchmarks -- --filter '*'
BenchmarkSwitcher.FromAssembly(typeof(Runtime.Memory.Benchmarks.Peers).Assembly).Run(args);
