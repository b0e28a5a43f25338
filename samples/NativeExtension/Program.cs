// NativeExtension: a C extension (native/counting_ext.c, built with the machine's C compiler against
// Runtime.Memory/native/runtime_mem.h) loaded into a runtime. It allocates through the domains, installs a counting
// hook from C, and shows the round trip of get_allocator / set_allocator.
//
//   dotnet run --project samples/NativeExtension

using System.Runtime.InteropServices;
using Runtime.Memory;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Interop;

string library = Path.Combine(AppContext.BaseDirectory, "libcounting_ext.so");
if (!File.Exists(library))
{
    Console.Error.WriteLine($"NativeExtension: {library} was not built. The C extension is compiled with gcc on Linux: install gcc and build again.");
    return 2;
}

using RuntimeMemory runtime = RuntimeMemory.Create();
using NativeExtension extension = NativeExtension.Load(runtime, library);
Console.WriteLine($"loaded {Path.GetFileName(extension.Path)} into a runtime on '{runtime.AllocatorName}'");

unsafe
{
    var install = (delegate* unmanaged<int, int>)extension.GetExport("ext_install_counting_hook");
    var remove = (delegate* unmanaged<int, int>)extension.GetExport("ext_remove_counting_hook");
    var counts = (delegate* unmanaged<int, long*, void>)extension.GetExport("ext_counts");
    var work = (delegate* unmanaged<int, int, int>)extension.GetExport("ext_work");
    var roundTrip = (delegate* unmanaged<int, int>)extension.GetExport("ext_round_trip");

    int status = install((int)MemoryDomainKind.Mem);
    Console.WriteLine($"C counting hook on mem: status {status}; chain now {runtime.Mem.DescribeChain()}");

    int problems = work((int)MemoryDomainKind.Mem, 1000);
    Console.WriteLine($"the extension allocated, filled, grew and freed 1,000 blocks in mem: {problems} problems");

    // Managed callers go through the same chain, C hook included.
    void* p = runtime.Mem.Malloc(100);
    runtime.Mem.Free(p);

    long* c = stackalloc long[4];
    counts((int)MemoryDomainKind.Mem, c);
    Console.WriteLine($"the C hook counted: {c[0]} mallocs, {c[1]} callocs, {c[2]} reallocs, {c[3]} frees");

    Console.WriteLine($"get_allocator / set_allocator / get_allocator on obj gives the same struct: {(roundTrip((int)MemoryDomainKind.Obj) == 0 ? "yes" : "no")}");
    Console.WriteLine($"removing the hook: status {remove((int)MemoryDomainKind.Mem)}; chain now {runtime.Mem.DescribeChain()}");
    Console.Write(StatisticsReport.Format(runtime.GetStatistics()));
    return problems == 0 && runtime.GetStatistics().LiveBlocks == 0 ? 0 : 1;
}
