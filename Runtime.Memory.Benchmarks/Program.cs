using BenchmarkDotNet.Running;
using Runtime.Memory.Benchmarks;

// Timing workloads (BenchmarkDotNet), one class per workload, each comparing "obj domain" (ours), "glibc" (baseline),
// "mimalloc" and "tcmalloc"; results are per operation (OperationsPerInvoke):
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --filter '*'                 every workload
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --anyCategories churn        one workload by category:
//       pair16, pair64, batch, churn, grow, xthread, pool4k, zlib, lua, sqlite   (or --filter '*ChurnBenchmarks*')
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --filter '*' -j Dry          smoke check only
// Footprint (resident memory in a warm second cycle of 1,000,000 blocks, not timing; each allocator in a fresh child
// process, prints a markdown table):
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --footprint
// The tracing rows of pair16 and churn as Stopwatch loops, each in a fresh process (a quick check, prints a table):
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --tracing-loop
// Tracing a Lua script at recursion depth 10, 1,000 and 100,000 (off, exact, sampled), through the real host:
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --depth-loop
// binary-trees on Lua's own allocator and routed into obj on default, malloc and mimalloc, interleaved (a quick check):
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --lua-loop
// The same for the metrics (listened to, collected every 100 ms) and a budget (set, never reached):
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --observability-loop
// The debug hooks with their quarantine of freed blocks (1 MiB per domain) and without it, against the plain obj domain:
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --debug-loop
// A 4 KiB buffer through the safe API (Obj.AsMemoryPool().Rent + Dispose) against a raw Malloc/Free pair and
// ArrayPool<byte>.Shared, as Stopwatch loops (a quick check of the pool4k rows):
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --pool-loop
// The whole comparison in one run, printing one table of ratios against glibc, mimalloc, tcmalloc and a routed
// library's own allocator, then the footprint table (optional BenchmarkDotNet arguments after it replace the default
// --warmupCount 3 --iterationCount 8; a --filter among them runs only the workloads it names, a check of the table):
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --compare
//   dotnet run -c Release --project Runtime.Memory.Benchmarks -- --compare --filter '*Pair16*' --job short
if (args is ["--compare", .. var compareArgs])
{
    return Comparison.Run(compareArgs);
}

if (args is ["--tracing-loop"])
{
    return TracingLoop.RunAll();
}

if (args is ["--tracing-loop-one", var workload, var mode])
{
    return TracingLoop.RunOne(workload, mode);
}

if (args is ["--depth-loop"])
{
    return DepthLoop.RunAll();
}

if (args is ["--observability-loop"])
{
    return ObservabilityLoop.RunAll();
}

if (args is ["--observability-loop-one", var observedWorkload, var observedMode])
{
    return ObservabilityLoop.RunOne(observedWorkload, observedMode);
}

if (args is ["--debug-loop"])
{
    return DebugLoop.RunAll();
}

if (args is ["--debug-loop-one", var debugWorkload, var debugMode])
{
    return DebugLoop.RunOne(debugWorkload, debugMode);
}

if (args is ["--lua-loop", .. var luaRows])
{
    return LuaLoop.Run(luaRows.FirstOrDefault()); // optional: only the rows whose name contains this
}

if (args is ["--pool-loop"])
{
    return PoolLoop.Run();
}

if (args is ["--footprint"])
{
    return Footprint.RunAll();
}

// Internal: one allocator's footprint row, run by --footprint in a child process.
if (args is ["--footprint-one", var allocator])
{
    return Footprint.RunOne(allocator);
}

BenchmarkSwitcher.FromAssembly(typeof(Peers).Assembly).Run(args);
return 0;
