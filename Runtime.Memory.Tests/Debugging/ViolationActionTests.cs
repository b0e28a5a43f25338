using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Runtime.Memory.Hosting;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Debugging;

/// <summary>What happens after a violation is found: FailFast, Throw, Log, and the native-code rule.</summary>
public sealed unsafe class ViolationActionTests
{
    private static (RuntimeMemory Runtime, FakeLogCollector Logs) CreateLogged(ViolationAction action)
    {
        var provider = DebugLogOnly(); // the service's own events (started, hooks) are another category
        ILoggerFactory factory = LoggerFactory.Create(builder => builder.AddProvider(provider));
        var runtime = new RuntimeMemory(
            new DefaultAllocatorProvider(new RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug }),
            new RuntimeMemoryOptions { Allocator = AllocatorNames.PymallocDebug, Debug = { OnViolation = action } },
            factory);
        return (runtime, provider.Collector);
    }

    private static FakeLoggerProvider DebugLogOnly() =>
        new(new FakeLogCollector(Microsoft.Extensions.Options.Options.Create(new FakeLogCollectorOptions { FilteredCategories = { "Runtime.Memory.Debug" } })));

    [Fact]
    public void Log_reports_at_error_with_the_full_report_and_leaks_the_block()
    {
        var (runtime, logs) = CreateLogged(ViolationAction.Log);
        using (runtime)
        {
            byte* p = (byte*)runtime.Mem.Malloc(16);
            p[16] = 0x78;
            runtime.Mem.Free(p); // returns normally

            FakeLogRecord record = Assert.Single(logs.GetSnapshot());
            Assert.Equal(LogLevel.Error, record.Level);
            Assert.Equal(4001, record.Id.Id);
            Assert.Equal("MemoryViolation", record.Id.Name);
            Assert.Equal("Runtime.Memory.Debug", record.Category);
            Assert.Contains("at tail+0: 0x78 *** OUCH", record.Message);
            Assert.Contains(runtime.Debugger.LastViolation!.Report, record.Message);

            // The block is leaked, not freed: still live in the domain and in the registry, its bytes untouched.
            Assert.Equal(1, runtime.Mem.LiveBlocks);
            Assert.Equal(1, runtime.Debugger.LiveBlocks);
            Assert.Equal(0xCD, p[0]);
            Assert.Equal(0x78, p[16]);
        }
    }

    [Fact]
    public void Log_makes_a_bad_realloc_return_null_and_keeps_the_block()
    {
        var (runtime, logs) = CreateLogged(ViolationAction.Log);
        using (runtime)
        {
            void* p = runtime.Obj.Malloc(16);
            Assert.True(runtime.Raw.Realloc(p, 64) == null);
            Assert.Equal(MemoryViolationKind.WrongDomain, runtime.Debugger.LastViolation!.Kind);
            Assert.Single(logs.GetSnapshot());
            Assert.Equal(1, runtime.Raw.GetStatistics().Failures);

            var wrong = runtime.Debugger.LastViolation!;
            Assert.Equal((nuint)16, wrong.RequestedSize);
            Assert.Equal(1UL, wrong.Serial);
            Assert.Equal(MemoryDomainKind.Obj, wrong.AllocatedBy);
            runtime.Obj.Free(p); // the right domain still frees it
            Assert.Equal(0, runtime.GetStatistics().LiveBlocks);
        }
    }

    [Fact]
    public void Throw_gives_the_managed_caller_the_violation_and_logs_nothing()
    {
        var (runtime, logs) = CreateLogged(ViolationAction.Throw);
        using (runtime)
        {
            void* p = runtime.Obj.Malloc(16);
            runtime.Obj.Free(p);
            var ex = Assert.Throws<MemoryViolationException>(() => runtime.Obj.Free(p));
            Assert.Equal(MemoryViolationKind.AlreadyFreed, ex.Violation.Kind);
            Assert.Equal(MemoryOperation.Free, ex.Violation.Operation);
            Assert.Equal(MemoryDomainKind.Obj, ex.Violation.Domain);
            Assert.Equal(MemoryDomainKind.Obj, ex.Violation.AllocatedBy);
            Assert.Equal((nuint)16, ex.Violation.RequestedSize); // still in the quarantine, which keeps its size and serial number
            Assert.Equal(runtime.Debugger.Calls, ex.Violation.Serial);
            Assert.Equal((nuint)p, ex.Violation.Address);
            Assert.Equal(ex.Violation.Report, ex.Message);
            Assert.Empty(logs.GetSnapshot());
            Assert.Null(runtime.Obj.LastFault); // a violation is not an allocator fault
        }
    }

    [Fact]
    public void Under_throw_a_call_from_native_code_logs_instead()
    {
        var (runtime, logs) = CreateLogged(ViolationAction.Throw);
        using (runtime)
        {
            void* p = runtime.Mem.Malloc(16);
            using (NativeCallScope.Enter())
            {
                Assert.True(NativeCallScope.IsActive);
                runtime.Raw.Free(p);                          // no exception
                Assert.True(runtime.Raw.Realloc(p, 8) == null); // nor here
            }

            Assert.False(NativeCallScope.IsActive);
            Assert.Equal(2, logs.GetSnapshot().Count);
            Assert.All(logs.GetSnapshot(), r => Assert.Equal(LogLevel.Error, r.Level));
            Assert.Throws<MemoryViolationException>(() => runtime.Raw.Free(p)); // outside the scope it throws again
            runtime.Mem.Free(p);
        }
    }

    [Fact]
    public void The_action_can_be_changed_at_run_time_and_rejects_undefined_values()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Malloc, ViolationAction.Log);
        void* p = runtime.Mem.Malloc(1);
        runtime.Mem.Free(p);
        runtime.Mem.Free(p); // logged to stderr (no logger), not thrown
        runtime.Debugger.OnViolation = ViolationAction.Throw;
        Assert.Throws<MemoryViolationException>(() => runtime.Mem.Free(p));
        Assert.Equal(2, runtime.Debugger.Violations);
        Assert.Throws<ArgumentOutOfRangeException>(() => runtime.Debugger.OnViolation = (ViolationAction)7);
    }

    [Fact]
    public void FailFast_stops_the_process_with_the_report_on_stderr()
    {
        ChildProcess.Result run = ChildProcess.Run("DebugHooks", "overrun");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("wrote past the block; freeing it", run.Stdout);
        Assert.DoesNotContain("freed;", run.Stdout); // nothing ran after the violation
        Assert.Contains("Memory violation in free through the mem domain: bad trailing pad byte", run.Stderr);
        Assert.Contains("    32 bytes originally requested\n", run.Stderr);
        Assert.Contains("        at tail+0: 0x78 *** OUCH\n", run.Stderr);
        Assert.Contains("    The block was made by call #1 to debug malloc/realloc.\n", run.Stderr);
        Assert.Contains("RuntimeMemory debug hooks:", run.Stderr); // FailFast's own message
    }

    [Fact]
    public void FailFast_logs_the_fatal_event_before_the_process_stops()
    {
        ChildProcess.Result run = ChildProcess.Run("DebugHooks", "overrun", "--Sample:LogEvents=true");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("log: Information 4201 AllocatorsConfigured Runtime.Memory\n", run.Stderr);
        Assert.Contains("log: Critical 4002 FatalMemoryViolation Runtime.Memory.Debug\n", run.Stderr);
        Assert.True(
            run.Stderr.IndexOf("bad trailing pad byte", StringComparison.Ordinal) < run.Stderr.IndexOf("log: Critical 4002", StringComparison.Ordinal),
            "the report is written before the event is logged");
    }

    [Fact]
    public void Log_in_the_same_program_reports_at_free_and_carries_on()
    {
        ChildProcess.Result run = ChildProcess.Run("DebugHooks", "overrun", "--RuntimeMemory:Debug:OnViolation=Log");
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("freed; violations reported: 1", run.Stdout);
        Assert.Contains("        at tail+0: 0x78 *** OUCH\n", run.Stderr);
    }
}
