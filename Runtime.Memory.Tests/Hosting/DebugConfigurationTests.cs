using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Options;
using Runtime.Memory.Hosting;

namespace Runtime.Memory.Tests.Hosting;

/// <summary>The <c>RuntimeMemory:Debug</c> keys and the debug allocator names through configuration and DI.</summary>
public sealed unsafe class DebugConfigurationTests
{
    private static ServiceProvider Build(Dictionary<string, string?> settings, Action<IServiceCollection>? before = null)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
        before?.Invoke(services);
        services.AddRuntimeMemory();
        return services.BuildServiceProvider();
    }

    private static string Failure(Dictionary<string, string?> settings)
    {
        using ServiceProvider provider = Build(settings);
        return Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory()).Message;
    }

    [Theory]
    [InlineData("debug", "pymalloc")]
    [InlineData("malloc_debug", "malloc")]
    [InlineData("PYMALLOC_DEBUG", "pymalloc")]
    public void A_debug_name_from_configuration_installs_the_hooks(string name, string memBase)
    {
        using ServiceProvider provider = Build(new() { ["RuntimeMemory:Allocator"] = name });
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal($"debug > {memBase}", runtime.Mem.DescribeChain());
        Assert.Equal("debug > malloc", runtime.Raw.DescribeChain());
        Assert.Equal(ViolationAction.FailFast, runtime.Debugger.OnViolation);
        Assert.False(runtime.Debugger.GuardPages);
    }

    [Fact]
    public void The_debug_keys_are_bound_ignoring_case()
    {
        using ServiceProvider provider = Build(new()
        {
            ["RuntimeMemory:Allocator"] = "malloc_debug",
            ["RuntimeMemory:Debug:OnViolation"] = "log",
            ["RuntimeMemory:Debug:GuardPages"] = "True",
        });
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal(ViolationAction.Log, runtime.Debugger.OnViolation);
        Assert.True(runtime.Debugger.GuardPages);
        Assert.Equal("debug(guard pages) > malloc", runtime.Obj.DescribeChain());
    }

    [Fact]
    public void Debug_settings_apply_when_the_hooks_are_set_up_later()
    {
        using ServiceProvider provider = Build(new() { ["RuntimeMemory:Allocator"] = "malloc", ["RuntimeMemory:Debug:OnViolation"] = "Throw" });
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal("malloc", runtime.Mem.DescribeChain());
        runtime.SetupDebugHooks();
        Assert.Equal("debug > malloc", runtime.Mem.DescribeChain());
        void* p = runtime.Mem.Malloc(4);
        runtime.Mem.Free(p);
        Assert.Throws<MemoryViolationException>(() => runtime.Mem.Free(p));
    }

    [Theory]
    [InlineData("Crash")]
    [InlineData("1")]   // the binder would take a number; the setting takes names only
    [InlineData("")]
    public void A_bad_violation_action_names_the_key_the_value_and_the_allowed_values(string value)
    {
        string message = Failure(new() { ["RuntimeMemory:Debug:OnViolation"] = value });
        Assert.Contains($"RuntimeMemory:Debug:OnViolation = '{value}': not a violation action. Allowed values: FailFast, Throw, Log.", message);
    }

    [Fact]
    public void A_bad_boolean_for_guard_pages_is_rejected()
    {
        string message = Failure(new() { ["RuntimeMemory:Debug:GuardPages"] = "yes" });
        Assert.Contains("RuntimeMemory:Debug:GuardPages = 'yes': not a boolean. Allowed values: true, false.", message);
    }

    [Fact]
    public void The_quarantine_is_1_MiB_per_domain_by_default_bound_from_configuration_and_0_turns_it_off()
    {
        using (ServiceProvider provider = Build(new() { ["RuntimeMemory:Allocator"] = "malloc_debug" }))
        {
            Assert.Equal(1L << 20, provider.ValidateRuntimeMemory().Debugger.QuarantineBytes);
        }

        using (ServiceProvider provider = Build(new() { ["RuntimeMemory:Allocator"] = "malloc_debug", ["RuntimeMemory:Debug:QuarantineBytes"] = "65536" }))
        {
            Assert.Equal(65536, provider.ValidateRuntimeMemory().Debugger.QuarantineBytes);
        }

        using (ServiceProvider provider = Build(new() { ["RuntimeMemory:Allocator"] = "malloc_debug", ["RuntimeMemory:Debug:QuarantineBytes"] = "0" }))
        {
            IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
            Assert.Equal(0, runtime.Debugger.QuarantineBytes);
            unsafe
            {
                runtime.Obj.Free(runtime.Obj.Malloc(16));
            }

            Assert.Equal(0, runtime.Debugger.QuarantinedBlocks); // off: a freed block goes straight back
        }
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("1MB")]
    [InlineData("9223372036854775808")]
    public void A_bad_quarantine_size_stops_the_start_naming_the_key_the_value_and_the_allowed_values(string value)
    {
        string message = Failure(new() { ["RuntimeMemory:Debug:QuarantineBytes"] = value });
        Assert.Contains($"RuntimeMemory:Debug:QuarantineBytes = '{value}': not a quarantine size. Allowed values: 0 (no quarantine) or a positive number of bytes per domain.", message);
    }

    [Fact]
    public void An_unknown_debug_key_is_rejected_with_the_allowed_keys()
    {
        string message = Failure(new() { ["RuntimeMemory:Debug:OnViolaton"] = "Log" });
        Assert.Contains("RuntimeMemory:Debug:OnViolaton is not a setting of RuntimeMemory:Debug. Allowed keys: OnViolation, GuardPages, QuarantineBytes.", message);
    }

    [Fact]
    public void A_value_where_the_debug_section_belongs_is_rejected()
    {
        string message = Failure(new() { ["RuntimeMemory:Debug"] = "true" });
        Assert.Contains("RuntimeMemory:Debug = 'true': RuntimeMemory:Debug must be a section with keys, not a value.", message);
    }

    [Fact]
    public void Options_set_in_code_are_validated_too()
    {
        var services = new ServiceCollection();
        services.AddRuntimeMemory(o => o.Debug.OnViolation = (ViolationAction)9);
        using ServiceProvider provider = services.BuildServiceProvider();
        string message = Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory()).Message;
        Assert.Contains("RuntimeMemory:Debug:OnViolation = '9': not a violation action. Allowed values: FailFast, Throw, Log.", message);
    }

    [Fact]
    public void Violations_are_logged_through_the_containers_logger_factory()
    {
        var fake = new FakeLoggerProvider(new FakeLogCollector(Microsoft.Extensions.Options.Options.Create(
            new FakeLogCollectorOptions { FilteredCategories = { "Runtime.Memory.Debug" } }))); // the violations' category
        using ServiceProvider provider = Build(
            new() { ["RuntimeMemory:Allocator"] = "debug", ["RuntimeMemory:Debug:OnViolation"] = "Log" },
            services => services.AddLogging(builder => builder.AddProvider(fake)));
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        void* p = runtime.Obj.Malloc(8);
        runtime.Mem.Free(p);
        FakeLogRecord record = Assert.Single(fake.Collector.GetSnapshot());
        Assert.Equal(LogLevel.Error, record.Level);
        Assert.Contains("bad ID: Allocated using API 'o', verified using API 'm'", record.Message);
    }
}
