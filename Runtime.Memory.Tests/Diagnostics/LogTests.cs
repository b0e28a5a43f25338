using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Time.Testing;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Extensions;
using Runtime.Memory.Hosting;
using Runtime.Memory.Testing;

namespace Runtime.Memory.Tests.Diagnostics;

/// <summary>The service's own log events (<see cref="RuntimeMemoryLog"/>), read through <see cref="FakeLogger"/>.</summary>
public sealed unsafe class LogTests : IDisposable
{
    private readonly FakeLoggerProvider _logs = new();
    private readonly ILoggerFactory _factory;
    private readonly FakeTimeProvider _time = new();

    public LogTests() => _factory = LoggerFactory.Create(builder => builder.AddProvider(_logs).SetMinimumLevel(LogLevel.Trace));

    public void Dispose() => _factory.Dispose();

    private RuntimeMemory Create(string allocator = AllocatorNames.Pymalloc, RuntimeMemoryOptions? options = null)
    {
        options ??= new RuntimeMemoryOptions { Allocator = allocator };
        return new RuntimeMemory(new DefaultAllocatorProvider(options), options, _factory, _time);
    }

    private IReadOnlyList<FakeLogRecord> Events(int id) => _logs.Collector.GetSnapshot().Where(r => r.Id.Id == id).ToArray();

    private static string? Field(FakeLogRecord record, string key) => record.GetStructuredStateValue(key);

    [Fact]
    public void Start_logs_the_chain_of_every_domain()
    {
        using RuntimeMemory runtime = Create(AllocatorNames.PymallocDebug);
        FakeLogRecord started = Assert.Single(Events(4201));
        Assert.Equal(LogLevel.Information, started.Level);
        Assert.Equal(RuntimeMemoryLog.Category, started.Category);
        Assert.Equal("AllocatorsConfigured", started.Id.Name);
        Assert.Equal("pymalloc_debug", Field(started, "Allocator"));
        Assert.Equal("debug > malloc", Field(started, "RawChain"));
        Assert.Equal("debug > pymalloc", Field(started, "ObjChain"));
    }

    [Fact]
    public void Installing_and_removing_a_hook_are_logged_with_the_chain()
    {
        using RuntimeMemory runtime = Create();
        var hook = new RecordingAllocator();
        runtime.Mem.InstallHook(hook);
        FakeLogRecord installed = Assert.Single(Events(4203));
        Assert.Equal(hook.Name, Field(installed, "Hook"));
        Assert.Equal("mem", Field(installed, "Domain"));
        Assert.Equal($"{hook.Name} > pymalloc", Field(installed, "Chain"));

        Assert.True(runtime.Mem.RemoveHook(hook));
        FakeLogRecord removed = Assert.Single(Events(4204));
        Assert.Equal(hook.Name, Field(removed, "Hook"));
        Assert.Equal("pymalloc", Field(removed, "Chain"));
    }

    [Fact]
    public void Tracing_start_and_stop_log_its_hooks()
    {
        using RuntimeMemory runtime = Create();
        runtime.Tracer.Start();
        Assert.Equal(["mem", "obj", "raw"], Events(4203).Select(r => Field(r, "Domain")).Order());
        Assert.All(Events(4203), r => Assert.Equal("tracing", Field(r, "Hook")));
        runtime.Tracer.Stop();
        Assert.Equal(3, Events(4204).Count);
    }

    [Fact]
    public void Replacing_an_allocator_is_logged_with_both_chains()
    {
        using RuntimeMemory runtime = Create();
        runtime.Raw.SetAllocator(new SystemAllocator());
        FakeLogRecord replaced = Assert.Single(Events(4202));
        Assert.Equal("raw", Field(replaced, "Domain"));
        Assert.Equal("malloc", Field(replaced, "PreviousChain"));
        Assert.Equal("malloc", Field(replaced, "Chain"));
    }

    [Fact]
    public void A_budget_change_is_logged()
    {
        using RuntimeMemory runtime = Create();
        runtime.Obj.MaxBytes = 4096;
        runtime.Obj.MaxBytes = 4096; // no change, no event
        runtime.Obj.MaxBytes = null;
        IReadOnlyList<FakeLogRecord> changes = Events(4302);
        Assert.Equal(2, changes.Count);
        Assert.Equal("obj domain", Field(changes[0], "Budget"));
        Assert.Equal("none", Field(changes[0], "PreviousLimit"));
        Assert.Equal("4,096 bytes", Field(changes[0], "Limit"));
        Assert.Equal("none", Field(changes[1], "Limit"));
    }

    [Fact]
    public void A_refusal_episode_is_logged_once_and_episodes_are_rate_limited()
    {
        using RuntimeMemory runtime = Create();
        MemoryDomain domain = runtime.Obj;
        domain.MaxBytes = 1024;
        void* held = domain.Malloc(1000);

        for (int i = 0; i < 5; i++)
        {
            Assert.True(domain.Malloc(64) == null); // one episode: refusals with no success between them
        }

        FakeLogRecord first = Assert.Single(Events(4301));
        Assert.Equal(LogLevel.Warning, first.Level);
        Assert.Equal("obj domain", Field(first, "Budget"));
        Assert.Equal("1024", Field(first, "LimitBytes"));
        Assert.Equal("64", Field(first, "RequestBytes"));
        Assert.Equal("1000", Field(first, "LiveBytes")); // above 512 bytes: a large block, accounted as asked
        Assert.Equal("0", Field(first, "UnloggedEpisodes"));

        void* small = domain.Malloc(16); // 1000 + 16 fits: the episode ends
        Assert.True(small != null);
        Assert.True(domain.Malloc(64) == null); // a second episode, within the second: counted, not logged
        domain.Free(small);
        small = domain.Malloc(16); // ends it
        Assert.True(small != null);
        Assert.True(domain.Malloc(64) == null); // a third, not logged either
        Assert.Single(Events(4301));

        _time.Advance(BudgetLog.MinInterval);
        domain.Free(small);
        small = domain.Malloc(16);
        Assert.True(small != null);
        Assert.True(domain.Malloc(64) == null); // a fourth, due: logged with the two it skipped
        IReadOnlyList<FakeLogRecord> events = Events(4301);
        Assert.Equal(2, events.Count);
        Assert.Equal("2", Field(events[1], "UnloggedEpisodes"));
        Assert.Equal(8, domain.GetStatistics().LimitRefusals);
        domain.Free(small);
        domain.Free(held);
    }

    [Fact]
    public void A_tag_budget_refusal_is_logged_under_the_library()
    {
        using RuntimeMemory runtime = Create();
        using var route = new TestRoute(runtime);
        route.Account.MaxBytes = 10;
        Assert.True(route.Allocate(11) == null);
        Assert.True(route.Allocate(11) == null);
        FakeLogRecord refused = Assert.Single(Events(4301));
        Assert.Equal("library 'probe'", Field(refused, "Budget"));
        Assert.Equal("11", Field(refused, "RequestBytes"));
        Assert.Equal("0", Field(refused, "LiveBytes"));
    }

    [Fact]
    public void A_missing_backend_is_logged_with_what_to_install()
    {
        using RuntimeMemory runtime = Create();
        runtime.ReportBackendMissing("Lua", new DllNotFoundException("Lua 5.4 is not available: liblua54 could not be loaded."));
        FakeLogRecord missing = Assert.Single(Events(4401));
        Assert.Equal(LogLevel.Error, missing.Level);
        Assert.Equal("Lua", Field(missing, "Library"));
        Assert.Contains("liblua54", Field(missing, "Reason"));
    }

    [Fact]
    public void Without_a_logger_factory_refusals_are_counted_and_nothing_is_written()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        runtime.Obj.MaxBytes = 10;
        Assert.True(runtime.Obj.Malloc(100) == null);
        Assert.Equal(1, runtime.Obj.GetStatistics().LimitRefusals);
        Assert.Empty(_logs.Collector.GetSnapshot());
    }

    private sealed class TestRoute(RuntimeMemory runtime) : LibraryRoute(runtime, MemoryDomainKind.Raw, "probe");
}
