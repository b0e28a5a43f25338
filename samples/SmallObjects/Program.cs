// SmallObjects: the small-object allocator (pymalloc) under the obj domain. Four threads build and tear down
// object graphs, freeing each other's blocks; the allocator's statistics are printed in the layout of CPython's
// sys._debugmallocstats() while the objects are alive and after everything is freed. A counting arena allocator
// (PEP 445's PyObject_SetArenaAllocator) shows arenas coming from and going back to the OS.
//
//   dotnet run --project samples/SmallObjects

using System.Collections.Concurrent;
using Runtime.Memory;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Samples;
using Runtime.Memory.Allocators.SmallObject;

using var runtime = RuntimeMemory.Create(); // "default": pymalloc for mem and obj, malloc for raw
SmallObjectAllocator pymalloc = runtime.SmallObjects(MemoryDomainKind.Obj)!;
var arenas = new CountingArenaAllocator(pymalloc.ArenaAllocator);
pymalloc.ArenaAllocator = arenas;

var handoff = new ConcurrentQueue<nint>();
var live = new ConcurrentBag<nint>();
var workers = Enumerable.Range(0, 4).Select(t => new Thread(() =>
{
    var rng = new Random(t);
    for (int i = 0; i < 50_000; i++)
    {
        nint p = ObjectGraph.NewObject(runtime.Obj, rng);
        if (i % 3 == 0)
        {
            handoff.Enqueue(p);       // another thread frees it
        }
        else if (i % 3 == 1)
        {
            live.Add(p);              // kept alive until the end
        }
        else
        {
            ObjectGraph.FreeObject(runtime.Obj, p);
        }

        if (handoff.TryDequeue(out nint other))
        {
            ObjectGraph.FreeObject(runtime.Obj, other);
        }
    }
})).ToList();
workers.ForEach(w => w.Start());
workers.ForEach(w => w.Join());

Console.WriteLine($"while {live.Count:N0} objects are alive ({arenas.Allocated} arenas mapped so far):");
Console.WriteLine(SmallObjectReport.Format(pymalloc.GetStatistics()));

while (handoff.TryDequeue(out nint rest))
{
    ObjectGraph.FreeObject(runtime.Obj, rest);
}

foreach (nint p in live)
{
    ObjectGraph.FreeObject(runtime.Obj, p);
}

pymalloc.Collect();
SmallObjectStatistics after = pymalloc.GetStatistics();
Console.WriteLine($"after freeing everything: {after.BlocksInUse} blocks in use, {after.ArenasCurrent} arena(s) kept as the spare; " +
                  $"{arenas.Freed} of {arenas.Allocated} arenas went back to the OS.");
Console.Write(StatisticsReport.Format(runtime.GetStatistics()));
return after.BlocksInUse == 0 && runtime.GetStatistics().LiveBlocks == 0 ? 0 : 1;
