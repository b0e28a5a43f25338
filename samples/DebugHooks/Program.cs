// DebugHooks: what the debug hooks catch and how they report it.
//
//   dotnet run --project samples/DebugHooks
//       a tour of seven misuses under OnViolation=Throw; each report is printed; exits 0 when all seven are caught.
//       The seventh is a write after free caught without guard pages: the freed block waits in the quarantine
//       (RuntimeMemory:Debug:QuarantineBytes, 1 MiB per domain by default) filled with 0xDD, and its fill is checked
//       when it leaves or, here, when the quarantine is flushed; tracing is on for it, so the report names where the
//       block was allocated and where it was freed.
//
//   dotnet run --project samples/DebugHooks -- overrun [switches]
//       writes one byte past a 32-byte block of the mem domain, then frees it. With the defaults
//       (pymalloc_debug, OnViolation=FailFast) the free finds the damaged trailing pad: the report goes to stderr and
//       the process stops, as CPython's fatal error does. Switches:
//         --RuntimeMemory:Debug:GuardPages=true      the write itself faults (the block ends at an inaccessible page)
//         --RuntimeMemory:Debug:OnViolation=Log      the report is written and the program carries on (exit 0)
//
//         --Sample:LogEvents=true                    also log through ILogger, one line per event on stderr
//                                                    (written at once: FailFast leaves no time for a queued logger)
//
//   dotnet run --project samples/DebugHooks -- stale-write [switches]
//       frees a 64-byte block of the obj domain, writes into it, then flushes the quarantine (as Collect and Dispose
//       do). With the defaults the flush finds the changed byte: a WriteAfterFree report, and the process stops.
//         --RuntimeMemory:Debug:QuarantineBytes=0    no quarantine: the write goes unnoticed (exit 0)
//
//   dotnet run --project samples/DebugHooks -- use-after-free [switches]
//       frees a 64-byte block and then reads it. With the guard bytes alone the read sees the 0xDD the hooks left
//       there; with --RuntimeMemory:Debug:GuardPages=true the freed block is inaccessible and the read faults.

using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Runtime.Memory;
using Runtime.Memory.Hosting;
using Runtime.Memory.Allocators;
using Runtime.Memory.Debugging;

string mode = args.Length > 0 && !args[0].StartsWith("--", StringComparison.Ordinal) ? args[0] : "tour";
bool overrun = mode != "tour";
IConfiguration configuration = new ConfigurationBuilder()
    .AddInMemoryCollection(new Dictionary<string, string?>
    {
        ["RuntimeMemory:Allocator"] = "pymalloc_debug",
        ["RuntimeMemory:Debug:OnViolation"] = overrun ? "FailFast" : "Throw",
    })
    .AddCommandLine(overrun ? args[1..] : args)
    .Build();

var services = new ServiceCollection();
services.AddSingleton(configuration);
if (configuration.GetValue<bool>("Sample:LogEvents"))
{
    services.AddLogging(builder => builder.AddProvider(new StderrEventLogger()));
}

services.AddRuntimeMemory();
using ServiceProvider provider = services.BuildServiceProvider();
IRuntimeMemory runtime;
try
{
    runtime = provider.ValidateRuntimeMemory(); // a bad setting stops here with a clear message
}
catch (Microsoft.Extensions.Options.OptionsValidationException ex)
{
    foreach (string failure in ex.Failures)
    {
        Console.Error.WriteLine($"DebugHooks: configuration error: {failure}");
    }

    return 2;
}

return mode switch
{
    "tour" => Tour(runtime),
    "overrun" => Overrun(runtime),
    "use-after-free" => UseAfterFree(runtime),
    "stale-write" => StaleWrite(runtime),
    "write-after-free" => WriteAfterFree(runtime, configuration.GetValue<bool>("Sample:PassThroughHook")),
    _ => Usage(mode),
};

static int Usage(string mode)
{
    Console.Error.WriteLine($"DebugHooks: unknown mode '{mode}'. Modes: (none) for the tour, overrun, stale-write, use-after-free, write-after-free.");
    return 2;
}

static unsafe int StaleWrite(IRuntimeMemory runtime)
{
    Console.WriteLine($"obj chain: {runtime.Obj.DescribeChain()}; quarantine {runtime.Debugger.QuarantineBytes} bytes per domain");
    byte* p = (byte*)runtime.Obj.Malloc(64);
    runtime.Obj.Free(p);
    p[63] = 7; // the last byte, through a stale pointer
    Console.WriteLine("wrote into the freed block; flushing the quarantine");
    int found = runtime.Debugger.FlushQuarantine();
    Console.WriteLine($"flushed; writes after free found: {found}");
    return 0;
}

static unsafe int UseAfterFree(IRuntimeMemory runtime)
{
    Console.WriteLine($"mem chain: {runtime.Mem.DescribeChain()}");
    byte* p = (byte*)runtime.Mem.Malloc(64);
    p[0] = 42;
    runtime.Mem.Free(p);
    Console.WriteLine("freed a 64-byte block; reading its first byte");
    byte value = p[0];
    Console.WriteLine($"read 0x{value:x2} from the freed block");
    return 0;
}

static unsafe int WriteAfterFree(IRuntimeMemory runtime, bool passThroughHook)
{
    if (passThroughHook)
    {
        runtime.Obj.InstallHook(new PassThroughHook());
    }

    Console.WriteLine($"obj chain: {runtime.Obj.DescribeChain()}");
    byte* p = (byte*)runtime.Obj.Malloc(48);
    runtime.Obj.Free(p);
    Console.WriteLine($"freed 0x{(nuint)p:x16}");
    *(ulong*)p = 0x28; // a stale pointer's write: the first word of a free pymalloc block is its free-list link
    Console.WriteLine("wrote into the freed block; allocating again");
    for (int i = 0; i < 1000; i++)
    {
        if (runtime.Obj.Malloc(48) == null)
        {
            Console.WriteLine($"allocation {i} returned null");
            return 1;
        }
    }

    Console.WriteLine("1000 allocations succeeded: the corruption went unnoticed");
    return 0;
}

static unsafe int Overrun(IRuntimeMemory runtime)
{
    Console.WriteLine($"mem chain: {runtime.Mem.DescribeChain()}");
    byte* p = (byte*)runtime.Mem.Malloc(32);
    Console.WriteLine("allocated 32 bytes; writing one byte past the end");
    p[32] = (byte)'x';
    Console.WriteLine("wrote past the block; freeing it");
    runtime.Mem.Free(p);
    Console.WriteLine($"freed; violations reported: {runtime.Debugger.Violations}");
    return 0;
}

static unsafe int Tour(IRuntimeMemory runtime)
{
    Console.WriteLine($"chains: raw {runtime.Raw.DescribeChain()}, mem {runtime.Mem.DescribeChain()}, obj {runtime.Obj.DescribeChain()}");
    Console.WriteLine();
    int caught = 0;

    caught += Expect(MemoryViolationKind.BadTrailingPad, "a write one byte past the end", () =>
    {
        byte* p = (byte*)runtime.Mem.Malloc(16);
        p[16] = (byte)'x';
        runtime.Mem.Free(p);
    });

    caught += Expect(MemoryViolationKind.BadLeadingPad, "a write one byte before the start", () =>
    {
        byte* p = (byte*)runtime.Obj.Malloc(24);
        p[-1] = 0;
        runtime.Obj.Free(p);
    });

    caught += Expect(MemoryViolationKind.WrongDomain, "a mem block freed through raw", () =>
    {
        void* p = runtime.Mem.Malloc(16);
        runtime.Raw.Free(p);
    });

    caught += Expect(MemoryViolationKind.AlreadyFreed, "a double free", () =>
    {
        void* p = runtime.Obj.Malloc(40);
        runtime.Obj.Free(p);
        runtime.Obj.Free(p);
    });

    caught += Expect(MemoryViolationKind.InteriorPointer, "a free of a pointer into the middle of a block", () =>
    {
        byte* p = (byte*)runtime.Mem.Malloc(64);
        runtime.Mem.Free(p + 8);
    });

    caught += Expect(MemoryViolationKind.UnknownPointer, "a free of a pointer from another allocator", () =>
    {
        void* foreign = System.Runtime.InteropServices.NativeMemory.Alloc(16);
        try
        {
            runtime.Mem.Free(foreign);
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.Free(foreign);
        }
    });

    caught += Expect(MemoryViolationKind.WriteAfterFree, "a write after free, found in the quarantine without guard pages", () =>
    {
        runtime.Tracer.Start(frames: 3); // so that the report names where the block was allocated and freed
        try
        {
            byte* p = MakeBuffer(runtime);
            DropBuffer(runtime, p);
            p[5] = 1; // the stale pointer: the block is freed, filled with 0xDD and held in the quarantine
            runtime.Debugger.FlushQuarantine(); // also done by Collect, by Dispose, and when the block leaves the quarantine
        }
        finally
        {
            runtime.Tracer.Stop();
        }
    });

    Console.WriteLine($"{caught} of 7 misuses caught; {runtime.Debugger.LiveBlocks} suspect blocks were leaked rather than freed.");
    return caught == 7 ? 0 : 1;
}

[System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
static unsafe byte* MakeBuffer(IRuntimeMemory runtime) => (byte*)runtime.Obj.Malloc(32);

[System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
static unsafe void DropBuffer(IRuntimeMemory runtime, byte* buffer) => runtime.Obj.Free(buffer);

static int Expect(MemoryViolationKind expected, string what, Action misuse)
{
    Console.WriteLine($"--- {what}");
    try
    {
        misuse();
        Console.WriteLine("not caught");
        return 0;
    }
    catch (MemoryViolationException ex)
    {
        Console.Write(ex.Violation.Report);
        Console.WriteLine();
        return ex.Violation.Kind == expected ? 1 : 0;
    }
}

/// <summary>A user hook that forwards every call, as samples/HookChain's does.</summary>
internal sealed unsafe class PassThroughHook : MemoryHook
{
    public override string Name => "pass-through";

    public override void* Malloc(nuint size) => Inner.Malloc(size);

    public override void Free(void* ptr) => Inner.Free(ptr);
}

/// <summary>Writes each event's level, id, name and category to stderr at once: <c>log: Critical 4002 FatalMemoryViolation Runtime.Memory.Debug</c>.</summary>
internal sealed class StderrEventLogger : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new Category(categoryName);

    public void Dispose()
    {
    }

    private sealed class Category(string name) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            Console.Error.WriteLine($"log: {logLevel} {eventId.Id} {eventId.Name} {name}");
            Console.Error.Flush();
        }
    }
}
