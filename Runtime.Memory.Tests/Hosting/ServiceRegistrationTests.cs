using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Runtime.Memory.Hosting;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Hosting;

/// <summary><c>AddRuntimeMemory</c>: binding, validation at start, TryAdd swaps, instance isolation.</summary>
public sealed class ServiceRegistrationTests
{
    private static ServiceProvider Build(Dictionary<string, string?> settings, Action<IServiceCollection>? before = null)
    {
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var services = new ServiceCollection();
        services.AddSingleton(configuration);
        before?.Invoke(services);
        services.AddRuntimeMemory();
        return services.BuildServiceProvider();
    }

    private static string ValidationMessage(Dictionary<string, string?> settings)
    {
        using ServiceProvider provider = Build(settings);
        return Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory()).Message;
    }

    [Fact]
    public void The_allocator_is_bound_from_the_runtime_memory_section()
    {
        using ServiceProvider provider = Build(new() { ["RuntimeMemory:Allocator"] = "malloc" });
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal("malloc", runtime.AllocatorName);
        Assert.IsType<SystemAllocator>(runtime.Obj.Allocator);
        Assert.Same(runtime, provider.GetRequiredService<IRuntimeMemory>());
    }

    [Fact]
    public void Allocator_names_ignore_case_and_surrounding_spaces()
    {
        using ServiceProvider provider = Build(new() { ["RuntimeMemory:Allocator"] = " MALLOC " });
        Assert.Equal("malloc", provider.ValidateRuntimeMemory().AllocatorName);
    }

    [Fact]
    public unsafe void On_a_bare_service_collection_without_configuration_the_service_runs_on_the_defaults()
    {
        var services = new ServiceCollection(); // no IConfiguration registered, as in a console app without a host
        services.AddRuntimeMemory();
        using ServiceProvider provider = services.BuildServiceProvider();
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal("default", runtime.AllocatorName);
        void* p = runtime.Obj.Malloc(32);
        Assert.True(p != null);
        runtime.Obj.Free(p);
        Assert.Same(runtime, provider.GetRequiredService<IRuntimeMemory>());
    }

    [Fact]
    public void A_time_provider_registered_in_the_container_is_the_runtimes_clock()
    {
        var clock = new Microsoft.Extensions.Time.Testing.FakeTimeProvider();
        using ServiceProvider provider = Build([], services => services.AddSingleton<TimeProvider>(clock));
        Assert.Same(clock, ((RuntimeMemory)provider.ValidateRuntimeMemory()).Time);

        using ServiceProvider withoutOne = Build([]);
        Assert.Same(TimeProvider.System, ((RuntimeMemory)withoutOne.ValidateRuntimeMemory()).Time);
    }

    [Fact]
    public void With_no_section_the_default_allocator_is_used()
    {
        using ServiceProvider provider = Build([]);
        Assert.Equal("default", provider.ValidateRuntimeMemory().AllocatorName);
    }

    [Fact]
    public void An_unknown_allocator_name_names_the_key_the_value_and_the_allowed_values()
    {
        string message = ValidationMessage(new() { ["RuntimeMemory:Allocator"] = "bogus" });
        Assert.Contains("RuntimeMemory:Allocator", message);
        Assert.Contains("'bogus'", message);
        Assert.Contains("Allowed values: default, debug, malloc, malloc_debug, pymalloc, pymalloc_debug, mimalloc, mimalloc_debug.", message);
    }

    [SkippableTheory]
    [InlineData("mimalloc")]
    [InlineData("MiMalloc_Debug")]
    public void The_mimalloc_names_validate_where_the_library_is_installed_and_put_mimalloc_in_every_domain(string name)
    {
        OptionalLibraries.SkipUnlessAvailable(name); // .ci/run installs libmimalloc2.0, and fails on a skip
        using ServiceProvider provider = Build(new() { ["RuntimeMemory:Allocator"] = name });
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal(name.ToLowerInvariant(), runtime.AllocatorName);
        foreach (MemoryDomain domain in new[] { runtime.Raw, runtime.Mem, runtime.Obj })
        {
            Assert.IsType<MimallocAllocator>(domain.BaseAllocator);
            Assert.Equal(name.Contains("debug", StringComparison.OrdinalIgnoreCase), domain.DebugHook is not null);
        }
    }

    [Fact]
    public void Without_the_mimalloc_library_the_problem_names_the_files_tried_and_the_package_to_install()
    {
        string? problem = MimallocAllocator.DescribeLoadProblem(["libmimalloc-absent.so.9", "libmimalloc-gone.so"]);
        Assert.Equal(
            "the mimalloc backend needs mimalloc, and none of libmimalloc-absent.so.9, libmimalloc-gone.so could be loaded. Install the Debian package libmimalloc2.0 (apt-get install libmimalloc2.0).",
            problem);
        // A library that loads but is not mimalloc: the C library, always there (zlib, used before, is optional).
        Assert.Contains("does not export mi_malloc_aligned", MimallocAllocator.DescribeLoadProblem(Runtime.Memory.Platform.NativeLibraries.CandidatesOf(Runtime.Memory.Platform.NativeLibraries.LibC)));
    }

    [Fact]
    public void An_empty_allocator_name_is_rejected()
    {
        string message = ValidationMessage(new() { ["RuntimeMemory:Allocator"] = "" });
        Assert.Contains("RuntimeMemory:Allocator = ''", message);
    }

    [Fact]
    public void An_object_where_the_allocator_name_belongs_is_rejected()
    {
        string message = ValidationMessage(new() { ["RuntimeMemory:Allocator:Name"] = "malloc" });
        Assert.Contains("RuntimeMemory:Allocator must be a string, not an object", message);
    }

    [Fact]
    public void An_unknown_key_in_the_section_is_rejected_with_the_allowed_keys()
    {
        string message = ValidationMessage(new() { ["RuntimeMemory:Alocator"] = "malloc" });
        Assert.Contains("RuntimeMemory:Alocator is not a setting of RuntimeMemory. Allowed keys: Allocator, Debug, Tracing, Limits.", message);
    }

    [Fact]
    public void A_value_where_the_section_belongs_is_rejected()
    {
        string message = ValidationMessage(new() { ["RuntimeMemory"] = "malloc" });
        Assert.Contains("RuntimeMemory = 'malloc': RuntimeMemory must be a section with keys, not a value. Allowed keys: Allocator, Debug, Tracing, Limits.", message);
    }

    [Fact]
    public void The_action_overload_validates_too()
    {
        var services = new ServiceCollection();
        services.AddRuntimeMemory(o => o.Allocator = "nope");
        using ServiceProvider provider = services.BuildServiceProvider();
        var error = Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory());
        Assert.Contains("RuntimeMemory:Allocator = 'nope'", error.Message);
    }

    [Fact]
    public void The_section_overload_binds_the_section_it_is_given()
    {
        IConfiguration configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(new Dictionary<string, string?> { ["Interp:Memory:Allocator"] = "wrong" })
            .Build();
        var services = new ServiceCollection();
        services.AddRuntimeMemory(configuration.GetSection("Interp:Memory"));
        using ServiceProvider provider = services.BuildServiceProvider();
        var error = Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory());
        Assert.Contains("Interp:Memory:Allocator = 'wrong'", error.Message);
    }

    [Fact]
    public async Task A_generic_host_refuses_to_start_with_a_bad_allocator()
    {
        HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?> { ["RuntimeMemory:Allocator"] = "bogus" });
        builder.Services.AddRuntimeMemory();
        using IHost host = builder.Build();
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());
        Assert.Contains("'bogus'", error.Message);
    }

    [Fact]
    public unsafe void An_allocator_provider_registered_first_replaces_the_default()
    {
        var recorders = new List<RecordingAllocator>();
        using ServiceProvider provider = Build([], services =>
            services.AddSingleton<IAllocatorProvider>(new FakeProvider(recorders)));

        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        runtime.Obj.Free(runtime.Obj.Malloc(5));

        Assert.Equal("fake", runtime.AllocatorName);
        Assert.Same(recorders[(int)MemoryDomainKind.Obj], runtime.Obj.Allocator);
        Assert.IsType<SystemAllocator>(runtime.Obj.BaseAllocator); // the chain the provider built is adopted whole
        Assert.Same(runtime.Obj, recorders[(int)MemoryDomainKind.Obj].Domain);
        Assert.Equal(3, recorders.Count);
        Assert.Equal(2, recorders[(int)MemoryDomainKind.Obj].Count);
        Assert.Equal(0, recorders[(int)MemoryDomainKind.Raw].Count);
    }

    [Fact]
    public void A_runtime_registered_first_is_the_one_resolved()
    {
        var mine = RuntimeMemory.Create();
        using ServiceProvider provider = Build([], services => services.AddSingleton<IRuntimeMemory>(mine));
        Assert.Same(mine, provider.ValidateRuntimeMemory());
    }

    [Fact]
    public void Adding_the_service_twice_registers_it_once()
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().Build());
        services.AddRuntimeMemory();
        services.AddRuntimeMemory();
        Assert.Single(services, d => d.ServiceType == typeof(IRuntimeMemory));
        Assert.Single(services, d => d.ServiceType == typeof(IAllocatorProvider));
    }

    [Fact]
    public unsafe void Two_service_providers_get_two_independent_runtimes()
    {
        using ServiceProvider a = Build([]);
        using ServiceProvider b = Build([]);
        IRuntimeMemory ra = a.ValidateRuntimeMemory();
        IRuntimeMemory rb = b.ValidateRuntimeMemory();
        void* p = ra.Mem.Malloc(64);

        Assert.NotSame(ra, rb);
        Assert.NotSame(ra.Mem.BaseAllocator, rb.Mem.BaseAllocator);
        Assert.IsType<SmallObjectAllocator>(ra.Mem.BaseAllocator);
        Assert.Equal(1, ra.Mem.LiveBlocks);
        Assert.Equal(0, rb.Mem.LiveBlocks);
        ra.Mem.Free(p);
    }

    [Fact]
    public void Create_without_di_validates_the_same_way()
    {
        var error = Assert.Throws<OptionsValidationException>(() => RuntimeMemory.Create(new RuntimeMemoryOptions { Allocator = "jemalloc" }));
        Assert.Contains("RuntimeMemory:Allocator = 'jemalloc'", error.Message);
        Assert.Equal("malloc", RuntimeMemory.Create(new RuntimeMemoryOptions { Allocator = "malloc" }).AllocatorName);
    }

    private sealed class FakeProvider(List<RecordingAllocator> recorders) : IAllocatorProvider
    {
        public string Name => "fake";

        public MemoryAllocator CreateBaseAllocator(MemoryDomainKind domain)
        {
            var recorder = new RecordingAllocator(new SystemAllocator());
            recorders.Add(recorder);
            return recorder;
        }
    }
}
