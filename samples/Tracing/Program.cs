// Tracing: allocation tracing (tracemalloc for the runtime) on a pretend interpreter that reports its frames through
// ThreadFrameStack: the top allocation sites by line, a comparison of two snapshots, a dump read back, the leak
// report, and the same workload traced by sampling with estimated totals.
//
//   dotnet run --project samples/Tracing

using Runtime.Memory;
using Runtime.Memory.Tracing;

using RuntimeMemory runtime = RuntimeMemory.Create();
runtime.Tracer.FrameProvider = new ThreadFrameStack();
runtime.Tracer.Start(frames: 4);

var program = new PretendScript(runtime);
program.Run(rounds: 1);
TraceSnapshot first = runtime.Tracer.TakeSnapshot();
Console.WriteLine("[ Top 5 by line after one round ]");
foreach (TraceStatistic stat in first.Statistics(TraceGrouping.Line).Take(5))
{
    Console.WriteLine(stat);
}

program.Run(rounds: 3);
TraceSnapshot second = runtime.Tracer.TakeSnapshot();
Console.WriteLine("\n[ What grew in three more rounds, by line ]");
foreach (TraceStatisticDiff diff in second.CompareTo(first, TraceGrouping.Line).Take(5))
{
    Console.WriteLine(diff);
}

Console.WriteLine("\n[ The biggest site's traceback ]");
TraceStatistic biggest = second.Statistics(TraceGrouping.Traceback)[0];
Console.WriteLine(biggest);
Console.WriteLine(string.Join('\n', biggest.Traceback.Format()));

string path = Path.Combine(Path.GetTempPath(), "tracing-sample.trace");
second.Dump(path);
TraceSnapshot loaded = TraceSnapshot.Load(path);
Console.WriteLine($"\nDumped to {path} ({new FileInfo(path).Length:N0} bytes) and read back: {loaded.Traces.Count:N0} traces, {TraceFormat.Size(loaded.TotalSize)}");
File.Delete(path);

(long current, long peak) = runtime.Tracer.GetTracedMemory();
Console.WriteLine($"Traced memory: current {TraceFormat.Size(current)}, peak {TraceFormat.Size(peak)}; tracing itself holds {TraceFormat.Size(runtime.Tracer.TracingMemory)}");

Console.WriteLine("\n[ Only the cache module, by file, cumulative ]");
foreach (TraceStatistic stat in second.Filter([new TraceFilter(true, "cache.lua", AllFrames: true)]).Statistics(TraceGrouping.File, cumulative: true))
{
    Console.WriteLine(stat);
}

program.ReleaseAllButTheCache();
Console.WriteLine("\n[ Leak report: what is still live after the program let go of everything but its cache ]");
Console.Write(runtime.Tracer.FormatLeakReport(limit: 3));
program.ReleaseCache();
runtime.Tracer.Stop();

// The same workload traced by sampling: one block per 64 KiB on average, totals estimated.
runtime.Tracer.Start(frames: 4, sampleBytes: 64 * 1024);
program.Run(rounds: 4);
(long estimated, _) = runtime.Tracer.GetTracedMemory();
long actual = runtime.GetStatistics().LiveBytes;
Console.WriteLine($"\nSampling (one block per 64 KiB): {runtime.Tracer.TracedBlocks:N0} blocks traced of {runtime.GetStatistics().LiveBlocks:N0}; estimated {TraceFormat.Size(estimated)}, the domains account {TraceFormat.Size(actual)}");
foreach (TraceStatistic stat in runtime.Tracer.TakeSnapshot().Statistics(TraceGrouping.Line).Take(3))
{
    Console.WriteLine($"  {stat}");
}

program.ReleaseAllButTheCache();
program.ReleaseCache();
return runtime.GetStatistics().LiveBlocks == 0 ? 0 : 1;

/// <summary>A pretend Lua program: frames pushed as its functions run, allocations made in the domains as Lua would.</summary>
internal sealed unsafe class PretendScript(RuntimeMemory runtime)
{
    private readonly List<(MemoryDomainKind Kind, nint Block)> _objects = [];
    private readonly List<(MemoryDomainKind Kind, nint Block)> _cache = [];

    public void Run(int rounds)
    {
        for (int round = 0; round < rounds; round++)
        {
            Call("main.lua", 3, "main", () =>
            {
                Call("parse.lua", 40, "tokenize", () => Allocate(_objects, MemoryDomainKind.Obj, 400, 48));
                Call("cache.lua", 12, "remember", () => Allocate(_cache, MemoryDomainKind.Mem, 50, 2048));
                ThreadFrameStack.SetLine(7);
                Call("image.lua", 88, "decode", () => Allocate(_objects, MemoryDomainKind.Raw, 2, 256 * 1024));
            });
        }
    }

    private static void Call(string file, int line, string function, Action body)
    {
        ThreadFrameStack.Push(file, line, function);
        try
        {
            body();
        }
        finally
        {
            ThreadFrameStack.Pop();
        }
    }

    private void Allocate(List<(MemoryDomainKind, nint)> into, MemoryDomainKind kind, int count, nuint size)
    {
        for (int i = 0; i < count; i++)
        {
            into.Add((kind, (nint)runtime[kind].Malloc(size)));
        }
    }

    public void ReleaseAllButTheCache() => Release(_objects);

    public void ReleaseCache() => Release(_cache);

    private void Release(List<(MemoryDomainKind Kind, nint Block)> blocks)
    {
        foreach ((MemoryDomainKind kind, nint block) in blocks)
        {
            runtime[kind].Free((void*)block);
        }

        blocks.Clear();
    }
}
