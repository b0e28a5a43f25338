using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Extensions;
using Runtime.Memory.Hosting;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Diagnostics;

/// <summary>
/// The <c>Runtime.Memory</c> meter, read the way a listener reads it: every instrument through
/// <see cref="MetricCollector{T}"/> on the container's own <see cref="IMeterFactory"/>, against the allocations the test made.
/// </summary>
public sealed unsafe class MetricsTests : IDisposable
{
    private readonly ServiceProvider _services;
    private readonly IMeterFactory _meterFactory;

    public MetricsTests()
    {
        var services = new ServiceCollection();
        services.AddMetrics();
        _services = services.BuildServiceProvider();
        _meterFactory = _services.GetRequiredService<IMeterFactory>();
    }

    public void Dispose() => _services.Dispose();

    private MetricCollector<long> Collect(string instrument) => new(_meterFactory, RuntimeMemoryMetrics.MeterName, instrument);

    /// <summary>One collection of an observable instrument: the value per tag value of <paramref name="tag"/>.</summary>
    private static Dictionary<string, long> Observe(MetricCollector<long> collector, string tag)
    {
        collector.Clear();
        collector.RecordObservableInstruments();
        return collector.GetMeasurementSnapshot().ToDictionary(m => (string)m.Tags[tag]!, m => m.Value);
    }

    private static long ObserveOne(MetricCollector<long> collector)
    {
        collector.Clear();
        collector.RecordObservableInstruments();
        return Assert.Single(collector.GetMeasurementSnapshot()).Value;
    }

    private RuntimeMemory CreateRuntime(string allocator = AllocatorNames.Default)
    {
        RuntimeMemory runtime = RuntimeMemory.Create(new RuntimeMemoryOptions { Allocator = allocator });
        runtime.EnableMetrics(_meterFactory);
        return runtime;
    }

    [Fact]
    public void The_debug_quarantine_usage_is_reported_per_domain_apart_from_the_usage()
    {
        using RuntimeMemory runtime = CreateRuntime(AllocatorNames.PymallocDebug);
        using MetricCollector<long> quarantine = Collect("runtime.memory.debug.quarantine.usage");
        using MetricCollector<long> usage = Collect("runtime.memory.usage");

        runtime.Mem.Free(runtime.Mem.Malloc(100));
        Dictionary<string, long> held = Observe(quarantine, RuntimeMemoryMetrics.DomainTag);
        Assert.Equal(100 + 32, held["mem"]); // the data and its guard bytes
        Assert.Equal(0, held["obj"]);
        Assert.Equal(0, Observe(usage, RuntimeMemoryMetrics.DomainTag)["mem"]);

        runtime.Collect();
        Assert.Equal(0, Observe(quarantine, RuntimeMemoryMetrics.DomainTag)["mem"]);
    }

    [Theory]
    [InlineData(AllocatorNames.Malloc)]
    [InlineData(AllocatorNames.Pymalloc)]
    public void Usage_blocks_and_totals_follow_each_domain(string allocator)
    {
        using RuntimeMemory runtime = CreateRuntime(allocator);
        using MetricCollector<long> usage = Collect("runtime.memory.usage");
        using MetricCollector<long> blocks = Collect("runtime.memory.block.count");
        using MetricCollector<long> total = Collect("runtime.memory.allocated");
        using MetricCollector<long> allocations = Collect("runtime.memory.allocations");
        using MetricCollector<long> peak = Collect("runtime.memory.peak_usage");

        void* a = runtime.Raw.Malloc(100);
        void* b = runtime.Obj.Malloc(48); // multiples of 16: the small-object allocator accounts its block sizes
        void* c = runtime.Obj.Malloc(16);

        Assert.Equal(new Dictionary<string, long> { ["raw"] = 100, ["mem"] = 0, ["obj"] = 64 }, Observe(usage, RuntimeMemoryMetrics.DomainTag));
        Assert.Equal(new Dictionary<string, long> { ["raw"] = 1, ["mem"] = 0, ["obj"] = 2 }, Observe(blocks, RuntimeMemoryMetrics.DomainTag));

        runtime.Obj.Free(b);
        runtime.Obj.Free(c);
        runtime.Raw.Free(a);

        Assert.Equal(new Dictionary<string, long> { ["raw"] = 0, ["mem"] = 0, ["obj"] = 0 }, Observe(usage, RuntimeMemoryMetrics.DomainTag));
        Assert.Equal(new Dictionary<string, long> { ["raw"] = 0, ["mem"] = 0, ["obj"] = 0 }, Observe(blocks, RuntimeMemoryMetrics.DomainTag));
        Assert.Equal(new Dictionary<string, long> { ["raw"] = 100, ["mem"] = 0, ["obj"] = 64 }, Observe(total, RuntimeMemoryMetrics.DomainTag));
        Assert.Equal(new Dictionary<string, long> { ["raw"] = 1, ["mem"] = 0, ["obj"] = 2 }, Observe(allocations, RuntimeMemoryMetrics.DomainTag));
        Assert.Equal(new Dictionary<string, long> { ["raw"] = 100, ["mem"] = 0, ["obj"] = 64 }, Observe(peak, RuntimeMemoryMetrics.DomainTag));
    }

    [Fact]
    public void The_instruments_agree_with_the_statistics_snapshot()
    {
        using RuntimeMemory runtime = CreateRuntime();
        using MetricCollector<long> usage = Collect("runtime.memory.usage");
        var blocks = new List<nint>();
        for (int i = 1; i <= 300; i++)
        {
            blocks.Add((nint)runtime.Mem.Malloc((nuint)(i * 7 % 600)));
        }

        RuntimeMemoryStatistics statistics = runtime.GetStatistics();
        Dictionary<string, long> observed = Observe(usage, RuntimeMemoryMetrics.DomainTag);
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            Assert.Equal(statistics[kind].LiveBytes, observed[kind.ToName()]);
        }

        blocks.ForEach(p => runtime.Mem.Free((void*)p));
    }

    [Fact]
    public void A_request_answered_with_null_is_a_failure_tagged_out_of_memory()
    {
        using RuntimeMemory runtime = CreateRuntime();
        using MetricCollector<long> failures = Collect("runtime.memory.allocation.failures");

        Assert.True(runtime.Obj.Malloc(MemoryDomain.MaxRequestSize + 1) == null);
        Assert.True(runtime.Obj.Calloc(nuint.MaxValue, 2) == null);

        Assert.Equal(
            new Dictionary<string, long>
            {
                ["raw/out_of_memory"] = 0, ["raw/limit"] = 0, ["mem/out_of_memory"] = 0, ["mem/limit"] = 0,
                ["obj/out_of_memory"] = 2, ["obj/limit"] = 0,
            },
            ObserveFailures(failures, RuntimeMemoryMetrics.DomainTag));
    }

    /// <summary>One collection of a failure counter, keyed <c>owner/error.type</c>.</summary>
    private static Dictionary<string, long> ObserveFailures(MetricCollector<long> collector, string ownerTag)
    {
        collector.Clear();
        collector.RecordObservableInstruments();
        return collector.GetMeasurementSnapshot().ToDictionary(
            m => $"{m.Tags[ownerTag]}/{m.Tags[RuntimeMemoryMetrics.ErrorTypeTag]}", m => m.Value);
    }

    [Fact]
    public void A_budget_refusal_is_a_failure_tagged_limit_and_the_budget_is_reported()
    {
        using RuntimeMemory runtime = CreateRuntime();
        using MetricCollector<long> failures = Collect("runtime.memory.allocation.failures");
        using MetricCollector<long> limit = Collect("runtime.memory.limit");
        Assert.Empty(Observe(limit, RuntimeMemoryMetrics.DomainTag)); // no budget, no measurement

        runtime.Obj.MaxBytes = 1024;
        void* block = runtime.Obj.Malloc(1000);
        Assert.True(block != null);
        Assert.True(runtime.Obj.Malloc(100) == null); // 1000 + 112 > 1024
        Assert.True(runtime.Obj.Malloc(MemoryDomain.MaxRequestSize + 1) == null); // a size no allocator serves: out of memory

        Dictionary<string, long> observed = ObserveFailures(failures, RuntimeMemoryMetrics.DomainTag);
        Assert.Equal(1, observed["obj/limit"]);
        Assert.Equal(1, observed["obj/out_of_memory"]);
        Assert.Equal(new Dictionary<string, long> { ["obj"] = 1024 }, Observe(limit, RuntimeMemoryMetrics.DomainTag));
        runtime.Obj.Free(block);
    }

    [Fact]
    public void A_tag_budget_refusal_is_a_library_failure_tagged_limit()
    {
        using RuntimeMemory runtime = CreateRuntime();
        using MetricCollector<long> failures = Collect("runtime.memory.library.allocation.failures");
        using MetricCollector<long> limit = Collect("runtime.memory.library.limit");
        using var route = new TestRoute(runtime, "budgeted");
        route.Account.MaxBytes = 100;

        void* block = route.Allocate(60);
        Assert.True(block != null);
        Assert.True(route.Allocate(60) == null);

        Assert.Equal(
            new Dictionary<string, long> { ["budgeted/limit"] = 1, ["budgeted/out_of_memory"] = 0 },
            ObserveFailures(failures, RuntimeMemoryMetrics.LibraryTag));
        Assert.Equal(new Dictionary<string, long> { ["budgeted"] = 100 }, Observe(limit, RuntimeMemoryMetrics.LibraryTag));
        route.Release(block);
    }

    [Fact]
    public void Pools_in_use_are_reported_per_small_object_domain()
    {
        using RuntimeMemory runtime = CreateRuntime();
        using MetricCollector<long> pools = Collect("runtime.memory.pool.count");
        long before = Observe(pools, RuntimeMemoryMetrics.DomainTag)["mem"];
        void* a = runtime.Mem.Malloc(16);
        void* b = runtime.Mem.Malloc(512); // another size class: another pool
        Dictionary<string, long> observed = Observe(pools, RuntimeMemoryMetrics.DomainTag);
        Assert.Equal(before + 2, observed["mem"]);
        Assert.False(observed.ContainsKey("raw")); // raw runs on malloc
        Assert.Equal(runtime.GetStatistics()[MemoryDomainKind.Mem].SmallObjects!.Classes.Sum(c => c.Pools), observed["mem"]);
        runtime.Mem.Free(a);
        runtime.Mem.Free(b);
    }

    [Fact]
    public void Debug_violations_are_counted()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(onViolation: ViolationAction.Throw);
        runtime.EnableMetrics(_meterFactory);
        using MetricCollector<long> violations = Collect("runtime.memory.debug.violations");
        Assert.Equal(0, ObserveOne(violations));

        void* p = runtime.Mem.Malloc(8);
        runtime.Mem.Free(p);
        DebugRuntimes.Catch(() => runtime.Mem.Free(p)); // double free

        Assert.Equal(1, ObserveOne(violations));
    }

    [Fact]
    public void Arenas_are_reported_for_the_domains_on_the_small_object_allocator_only()
    {
        using RuntimeMemory runtime = CreateRuntime(AllocatorNames.Default); // raw on malloc, mem and obj on pymalloc
        using MetricCollector<long> arenas = Collect("runtime.memory.arena.count");
        void* p = runtime.Obj.Malloc(32);

        Dictionary<string, long> observed = Observe(arenas, RuntimeMemoryMetrics.DomainTag);
        Assert.Equal(["mem", "obj"], observed.Keys.Order());
        Assert.Equal(runtime.SmallObjects(MemoryDomainKind.Obj)!.GetStatistics().ArenasCurrent, observed["obj"]);
        Assert.True(observed["obj"] >= 1);

        runtime.Obj.Free(p);
    }

    [Fact]
    public void Tracing_instruments_report_only_while_tracing()
    {
        using RuntimeMemory runtime = CreateRuntime();
        using MetricCollector<long> usage = Collect("runtime.memory.tracing.usage");
        using MetricCollector<long> traced = Collect("runtime.memory.tracing.block.count");

        usage.RecordObservableInstruments();
        Assert.Empty(usage.GetMeasurementSnapshot());

        runtime.Tracer.Start();
        void* p = runtime.Obj.Malloc(48);
        Assert.Equal(1, ObserveOne(traced));
        Assert.Equal(runtime.Tracer.TracingMemory, ObserveOne(usage));
        Assert.True(ObserveOne(usage) > 0);

        runtime.Obj.Free(p);
        Assert.Equal(0, ObserveOne(traced));
        runtime.Tracer.Stop();
        traced.Clear();
        traced.RecordObservableInstruments();
        Assert.Empty(traced.GetMeasurementSnapshot());
    }

    [Fact]
    public void Library_routes_are_reported_by_tag()
    {
        using RuntimeMemory runtime = CreateRuntime();
        using MetricCollector<long> usage = Collect("runtime.memory.library.usage");
        using MetricCollector<long> blocks = Collect("runtime.memory.library.block.count");
        using var route = new TestRoute(runtime, "testlib");

        void* a = route.Allocate(1000);
        void* b = route.Allocate(24);
        Assert.Equal(new Dictionary<string, long> { ["testlib"] = 1024 }, Observe(usage, RuntimeMemoryMetrics.LibraryTag));
        Assert.Equal(new Dictionary<string, long> { ["testlib"] = 2 }, Observe(blocks, RuntimeMemoryMetrics.LibraryTag));

        route.Release(a);
        route.Release(b);
        Assert.Equal(new Dictionary<string, long> { ["testlib"] = 0 }, Observe(usage, RuntimeMemoryMetrics.LibraryTag));
    }

    [Fact]
    public void Instruments_have_the_conventional_kinds_and_units()
    {
        using RuntimeMemory runtime = CreateRuntime();
        var seen = new Dictionary<string, Instrument>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == RuntimeMemoryMetrics.MeterName && ReferenceEquals(instrument.Meter, runtime.Metrics!.Meter))
                {
                    seen[instrument.Name] = instrument;
                }
            },
        };
        listener.Start();

        (string Name, Type Kind, string Unit)[] expected =
        [
            ("runtime.memory.usage", typeof(ObservableUpDownCounter<long>), "By"),
            ("runtime.memory.block.count", typeof(ObservableUpDownCounter<long>), "{block}"),
            ("runtime.memory.peak_usage", typeof(ObservableGauge<long>), "By"),
            ("runtime.memory.limit", typeof(ObservableUpDownCounter<long>), "By"),
            ("runtime.memory.allocated", typeof(ObservableCounter<long>), "By"),
            ("runtime.memory.allocations", typeof(ObservableCounter<long>), "{allocation}"),
            ("runtime.memory.allocation.failures", typeof(ObservableCounter<long>), "{failure}"),
            ("runtime.memory.debug.quarantine.usage", typeof(ObservableUpDownCounter<long>), "By"),
            ("runtime.memory.debug.violations", typeof(ObservableCounter<long>), "{violation}"),
            ("runtime.memory.arena.count", typeof(ObservableUpDownCounter<long>), "{arena}"),
            ("runtime.memory.pool.count", typeof(ObservableUpDownCounter<long>), "{pool}"),
            ("runtime.memory.tracing.usage", typeof(ObservableUpDownCounter<long>), "By"),
            ("runtime.memory.tracing.block.count", typeof(ObservableUpDownCounter<long>), "{block}"),
            ("runtime.memory.library.usage", typeof(ObservableUpDownCounter<long>), "By"),
            ("runtime.memory.library.block.count", typeof(ObservableUpDownCounter<long>), "{block}"),
            ("runtime.memory.library.limit", typeof(ObservableUpDownCounter<long>), "By"),
            ("runtime.memory.library.allocation.failures", typeof(ObservableCounter<long>), "{failure}"),
        ];
        Assert.Equal(expected.Select(e => e.Name).Order(), seen.Keys.Order());
        foreach ((string name, Type kind, string unit) in expected)
        {
            Assert.IsType(kind, seen[name]);
            Assert.Equal(unit, seen[name].Unit);
            Assert.False(string.IsNullOrWhiteSpace(seen[name].Description));
        }
    }

    [Fact]
    public void A_disposed_runtime_reports_nothing()
    {
        RuntimeMemory runtime = CreateRuntime();
        using MetricCollector<long> usage = Collect("runtime.memory.usage");
        usage.RecordObservableInstruments();
        Assert.Equal(3, usage.GetMeasurementSnapshot().Count);

        runtime.Dispose();
        usage.Clear();
        usage.RecordObservableInstruments();
        Assert.Empty(usage.GetMeasurementSnapshot());
    }

    [Fact]
    public void Enabling_metrics_twice_is_refused()
    {
        using RuntimeMemory runtime = CreateRuntime();
        var error = Assert.Throws<InvalidOperationException>(() => runtime.EnableMetrics(_meterFactory));
        Assert.Contains("already enabled", error.Message);
    }

    [Fact]
    public void Di_attaches_the_metrics_when_a_meter_factory_is_registered()
    {
        IConfiguration configuration = new ConfigurationBuilder().Build();
        var services = new ServiceCollection();
        services.AddSingleton(configuration);
        services.AddMetrics();
        services.AddRuntimeMemory();
        using ServiceProvider provider = services.BuildServiceProvider();
        var runtime = (RuntimeMemory)provider.ValidateRuntimeMemory();
        Assert.NotNull(runtime.Metrics);

        using var usage = new MetricCollector<long>(provider.GetRequiredService<IMeterFactory>(), RuntimeMemoryMetrics.MeterName, "runtime.memory.usage");
        void* p = runtime.Obj.Malloc(16);
        Assert.Equal(16, Observe(usage, RuntimeMemoryMetrics.DomainTag)["obj"]);
        runtime.Obj.Free(p);
    }

    [Fact]
    public void Without_a_meter_factory_di_creates_no_metrics()
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().Build());
        services.AddRuntimeMemory();
        using ServiceProvider provider = services.BuildServiceProvider();
        Assert.Null(((RuntimeMemory)provider.ValidateRuntimeMemory()).Metrics);
    }

    private sealed class TestRoute(RuntimeMemory runtime, string tag) : LibraryRoute(runtime, MemoryDomainKind.Raw, tag);
}
