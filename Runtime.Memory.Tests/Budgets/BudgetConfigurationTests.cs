using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Options;
using Runtime.Memory.Hosting;

namespace Runtime.Memory.Tests.Budgets;

/// <summary>
/// <c>RuntimeMemory:Limits</c>: validated at start (key, value, allowed values), applied when the service is created,
/// and re-applied on every configuration change through <c>IOptionsMonitor</c>; a bad change is logged and ignored.
/// </summary>
public sealed unsafe class BudgetConfigurationTests
{
    private static (ServiceProvider Provider, IConfigurationRoot Configuration, FakeLogCollector Logs) Build(Dictionary<string, string?> settings)
    {
        IConfigurationRoot configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var logs = new FakeLoggerProvider();
        var services = new ServiceCollection();
        services.AddSingleton<IConfiguration>(configuration);
        services.AddLogging(builder => builder.AddProvider(logs));
        services.AddRuntimeMemory();
        return (services.BuildServiceProvider(), configuration, logs.Collector);
    }

    [Fact]
    public void Limits_from_configuration_apply_when_the_service_starts()
    {
        (ServiceProvider provider, _, _) = Build(new()
        {
            ["RuntimeMemory:Limits:Obj:MaxBytes"] = "4096",
            ["RuntimeMemory:Limits:Raw:MaxBytes"] = "", // empty: no budget (how an environment variable clears one)
            ["RuntimeMemory:Limits:Tags:lua:MaxBytes"] = "1000",
        });
        using (provider)
        {
            var runtime = (RuntimeMemory)provider.ValidateRuntimeMemory();
            Assert.Equal(4096, runtime.Obj.MaxBytes);
            Assert.Null(runtime.Raw.MaxBytes);
            Assert.Null(runtime.Mem.MaxBytes);
            Assert.Equal(1000, runtime.Tag("lua").MaxBytes);

            void* p = runtime.Obj.Malloc(4000);
            Assert.True(p != null);
            Assert.True(runtime.Obj.Malloc(200) == null);
            runtime.Obj.Free(p);
        }
    }

    [Theory]
    [InlineData("RuntimeMemory:Limits:Obj:MaxBytes", "-1")]
    [InlineData("RuntimeMemory:Limits:Obj:MaxBytes", "0")]
    [InlineData("RuntimeMemory:Limits:Mem:MaxBytes", "lots")]
    [InlineData("RuntimeMemory:Limits:Raw:MaxBytes", "1.5")]
    [InlineData("RuntimeMemory:Limits:Raw:MaxBytes", "9223372036854775808")]
    [InlineData("RuntimeMemory:Limits:Tags:lua:MaxBytes", "-3")]
    public void A_bad_budget_stops_the_start_naming_the_key_the_value_and_the_allowed_values(string key, string value)
    {
        (ServiceProvider provider, _, _) = Build(new() { [key] = value });
        using (provider)
        {
            string message = Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory()).Message;
            Assert.Contains($"{key} = '{value}': not a budget. Allowed values: a whole number of bytes from 1 to 9223372036854775807", message);
        }
    }

    [Theory]
    [InlineData("RuntimeMemory:Limits:Heap:MaxBytes", "RuntimeMemory:Limits:Heap is not a setting of RuntimeMemory:Limits. Allowed keys: Raw, Mem, Obj, Tags.")]
    [InlineData("RuntimeMemory:Limits:Obj:Max", "RuntimeMemory:Limits:Obj:Max is not a setting of RuntimeMemory:Limits:Obj. Allowed keys: MaxBytes.")]
    [InlineData("RuntimeMemory:Limits:Tags:lua:Bytes", "RuntimeMemory:Limits:Tags:lua:Bytes is not a setting of RuntimeMemory:Limits:Tags:lua. Allowed keys: MaxBytes.")]
    [InlineData("RuntimeMemory:Limits:Tags:lu a:MaxBytes", "RuntimeMemory:Limits:Tags:lu a: not a library tag. Allowed values: a tag of letters, digits")]
    [InlineData("RuntimeMemory:Limits:Tags:lua", "RuntimeMemory:Limits:Tags:lua = '5': RuntimeMemory:Limits:Tags:lua must be a section with keys, not a value. Allowed keys: MaxBytes.")]
    [InlineData("RuntimeMemory:Limits", "RuntimeMemory:Limits = '5': RuntimeMemory:Limits must be a section with keys, not a value. Allowed keys: Raw, Mem, Obj, Tags.")]
    public void A_misshapen_limits_section_stops_the_start(string key, string expected)
    {
        (ServiceProvider provider, _, _) = Build(new() { [key] = "5" });
        using (provider)
        {
            string message = Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory()).Message;
            Assert.Contains(expected, message);
        }
    }

    [Fact]
    public void Limits_set_in_code_are_validated_too()
    {
        var services = new ServiceCollection();
        services.AddRuntimeMemory(o => o.Limits.Mem.MaxBytes = -5);
        using ServiceProvider provider = services.BuildServiceProvider();
        string message = Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory()).Message;
        Assert.Contains("RuntimeMemory:Limits:Mem:MaxBytes = '-5': not a budget.", message);
    }

    [Fact]
    public void A_configuration_change_applies_new_limits_without_a_restart()
    {
        (ServiceProvider provider, IConfigurationRoot configuration, FakeLogCollector logs) = Build(new()
        {
            ["RuntimeMemory:Limits:Obj:MaxBytes"] = "1024",
            ["RuntimeMemory:Limits:Tags:zlib:MaxBytes"] = "500",
        });
        using (provider)
        {
            var runtime = (RuntimeMemory)provider.ValidateRuntimeMemory();
            void* p = runtime.Obj.Malloc(1000);
            Assert.True(runtime.Obj.Malloc(500) == null);

            configuration["RuntimeMemory:Limits:Obj:MaxBytes"] = "1048576";
            configuration["RuntimeMemory:Limits:Tags:zlib:MaxBytes"] = null; // removed: no budget any more
            configuration["RuntimeMemory:Limits:Tags:lua:MaxBytes"] = "2000";
            configuration.Reload();

            Assert.Equal(1 << 20, runtime.Obj.MaxBytes);
            Assert.Null(runtime.Tag("zlib").MaxBytes);
            Assert.Equal(2000, runtime.Tag("lua").MaxBytes);
            void* q = runtime.Obj.Malloc(500);
            Assert.True(q != null);
            Assert.Contains(logs.GetSnapshot(), r => r.Id.Id == 4302 && r.GetStructuredStateValue("Budget") == "obj domain" && r.GetStructuredStateValue("Limit") == "1,048,576 bytes");
            runtime.Obj.Free(p);
            runtime.Obj.Free(q);
        }
    }

    [Theory]
    [InlineData("RuntimeMemory:Limits:Obj:MaxBytes", "-1", "RuntimeMemory:Limits:Obj:MaxBytes = '-1': not a budget.", "1024")]
    [InlineData("RuntimeMemory:Limits:Oops", "1", "RuntimeMemory:Limits:Oops is not a setting of RuntimeMemory:Limits.", null)]
    [InlineData("RuntimeMemory:Allocator", "nope", "RuntimeMemory:Allocator = 'nope'", "pymalloc")]
    public void A_bad_change_is_logged_and_the_limits_stay_as_they_were(string key, string value, string expected, string? fix)
    {
        (ServiceProvider provider, IConfigurationRoot configuration, FakeLogCollector logs) = Build(new()
        {
            ["RuntimeMemory:Limits:Obj:MaxBytes"] = "1024",
        });
        using (provider)
        {
            var runtime = (RuntimeMemory)provider.ValidateRuntimeMemory();
            configuration[key] = value;
            configuration["RuntimeMemory:Limits:Mem:MaxBytes"] = "999"; // valid, but the change as a whole is not
            configuration.Reload(); // must not throw on the change thread

            Assert.Equal(1024, runtime.Obj.MaxBytes);
            Assert.Null(runtime.Mem.MaxBytes);
            FakeLogRecord rejected = Assert.Single(logs.GetSnapshot(), r => r.Id.Id == 4303);
            Assert.Equal(LogLevel.Error, rejected.Level);
            Assert.Contains(expected, rejected.Message);

            if (fix is not null) // an in-memory key cannot be removed, only given another value
            {
                configuration[key] = fix; // fixed: the next change applies
                configuration.Reload();
                Assert.Equal(999, runtime.Mem.MaxBytes);
                Assert.Single(logs.GetSnapshot(), r => r.Id.Id == 4303);
            }
        }
    }
}
