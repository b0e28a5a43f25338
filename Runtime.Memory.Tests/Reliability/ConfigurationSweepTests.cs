using System.Collections;
using System.Globalization;
using System.Reflection;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Runtime.Memory.Hosting;

namespace Runtime.Memory.Tests.Reliability;

/// <summary>
/// A sweep over every key the library binds, found by reflection over <see cref="RuntimeMemoryOptions"/>: each one
/// with a value of the wrong type, a negative one, an absurd one and an object where the value belongs, and every
/// section with a key that does not exist, through both configuration overloads and every way of starting (resolving
/// the service, <c>ValidateRuntimeMemory</c>, a generic host). Each must stop the start with one message naming the
/// key, the bad value and the allowed values. The Hosting, Budgets and Tracing tests check single keys in depth; this
/// checks that no key is left out, so a new option without a case here fails <see cref="Every_bindable_key_has_a_sweep_case"/>.
/// </summary>
public sealed class ConfigurationSweepTests
{
    /// <summary>The tag standing for every entry of a dictionary of options (<c>Limits:Tags:&lt;tag&gt;</c>).</summary>
    private const string SampleTag = "lua";

    private const string Absurd = "1000000000000000000000000000000"; // 10^30: no integer type the options use holds it

    private const string BooleanAllowed = "true, false.";

    private const string BudgetAllowed = "a whole number of bytes from 1 to 9223372036854775807 (leave the key out, or empty, for no budget).";

    /// <summary>
    /// The sweep's cases: per key (relative to the section), the allowed values its message must list and the values
    /// that must be refused beyond the ones every key of its type gets (<see cref="BadValuesFor"/>).
    /// </summary>
    private static readonly Dictionary<string, (string Allowed, string[] Extra)> Cases = new(StringComparer.Ordinal)
    {
        ["Allocator"] = ("default, debug, malloc, malloc_debug, pymalloc, pymalloc_debug, mimalloc, mimalloc_debug.", ["", " ", "jemalloc", "pymalloc_debug_debug", "malloc,debug"]),
        ["Debug:OnViolation"] = ("FailFast, Throw, Log.", ["", "0", "2", "Log, Throw", "FailFastX"]),
        ["Debug:GuardPages"] = (BooleanAllowed, ["", "yes", "1", "0"]),
        ["Debug:QuarantineBytes"] = ("0 (no quarantine) or a positive number of bytes per domain.", ["", "-1", "9223372036854775808", "1.5", "1MB"]),
        ["Tracing:Enabled"] = (BooleanAllowed, ["", "on", "1"]),
        ["Tracing:Frames"] = ("an integer from 1 to 65535.", ["", "0", "65536", "2147483648", "1.5", "0x10", "5 frames"]),
        ["Tracing:SampleBytes"] = ("0 (trace every block) or a positive number of bytes.", ["", "9223372036854775808", "1.5", "4k"]),
        ["Tracing:LeakReportOnDispose"] = (BooleanAllowed, ["", "2", "no"]),
        ["Limits:Raw:MaxBytes"] = (BudgetAllowed, ["0", "9223372036854775808", "1.5", "64MB"]),
        ["Limits:Mem:MaxBytes"] = (BudgetAllowed, ["0", "9223372036854775808", "1.5", "64MB"]),
        ["Limits:Obj:MaxBytes"] = (BudgetAllowed, ["0", "9223372036854775808", "1.5", "64MB"]),
        [$"Limits:Tags:{SampleTag}:MaxBytes"] = (BudgetAllowed, ["0", "9223372036854775808", "1.5", "64MB"]),
    };

    /// <summary>
    /// Per key, a value that is wrong only in code (configuration cannot express it, or expresses it differently),
    /// for <see cref="RuntimeMemory.Create(RuntimeMemoryOptions?)"/> and the code overload of <c>AddRuntimeMemory</c>.
    /// Booleans have no wrong value in code.
    /// </summary>
    private static readonly Dictionary<string, object> CodeCases = new(StringComparer.Ordinal)
    {
        ["Allocator"] = "jemalloc",
        ["Debug:OnViolation"] = (ViolationAction)99,
        ["Debug:QuarantineBytes"] = -1L,
        ["Tracing:Frames"] = 0,
        ["Tracing:SampleBytes"] = -1L,
        ["Limits:Raw:MaxBytes"] = (long?)-1,
        ["Limits:Mem:MaxBytes"] = (long?)0,
        ["Limits:Obj:MaxBytes"] = (long?)long.MinValue,
        [$"Limits:Tags:{SampleTag}:MaxBytes"] = (long?)-1,
    };

    // ---- the keys, by reflection ----

    /// <summary>A bindable setting: its key under the section and the property it binds.</summary>
    public sealed record Setting(string Key, PropertyInfo Property);

    /// <summary>Every leaf key the binder would set on <see cref="RuntimeMemoryOptions"/>.</summary>
    private static IReadOnlyList<Setting> Settings()
    {
        var leaves = new List<Setting>();
        Walk(typeof(RuntimeMemoryOptions), "", leaves, sections: []);
        return leaves;
    }

    /// <summary>Every section with a fixed set of keys (relative path, "" for the section itself) and those keys.</summary>
    private static IReadOnlyList<(string Path, string[] Keys)> FixedSections()
    {
        var sections = new List<(string, string[])>();
        Walk(typeof(RuntimeMemoryOptions), "", leaves: [], sections);
        return sections;
    }

    private static IEnumerable<PropertyInfo> Bindable(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetIndexParameters().Length == 0 && p.GetMethod is { IsPublic: true } && p.SetMethod is { IsPublic: true })
            .OrderBy(p => p.MetadataToken); // declaration order, the order the messages list the keys in

    private static void Walk(Type type, string prefix, List<Setting> leaves, List<(string, string[])> sections)
    {
        PropertyInfo[] properties = Bindable(type).ToArray();
        sections.Add((prefix, properties.Select(p => p.Name).ToArray()));
        foreach (PropertyInfo property in properties)
        {
            string key = prefix.Length == 0 ? property.Name : $"{prefix}:{property.Name}";
            Type t = property.PropertyType;
            if (IsScalar(t))
            {
                leaves.Add(new Setting(key, property));
            }
            else if (DictionaryValueType(t) is { } valueType)
            {
                Walk(valueType, $"{key}:{SampleTag}", leaves, sections); // the dictionary's own keys are free: tags
            }
            else if (t.IsClass)
            {
                Walk(t, key, leaves, sections);
            }
            else
            {
                throw new NotSupportedException($"{key}: a setting of type {t} that the sweep does not know how to test.");
            }
        }
    }

    private static bool IsScalar(Type t) =>
        Nullable.GetUnderlyingType(t) is { } u ? IsScalar(u) : t == typeof(string) || t.IsPrimitive || t.IsEnum || t == typeof(decimal);

    private static Type? DictionaryValueType(Type t) =>
        t.IsGenericType && t.GetGenericTypeDefinition() == typeof(Dictionary<,>) && t.GetGenericArguments()[0] == typeof(string)
            ? t.GetGenericArguments()[1]
            : null;

    /// <summary>The values every key of <paramref name="setting"/>'s type must refuse: a wrong type, a negative, an absurd value.</summary>
    private static IEnumerable<string> BadValuesFor(Setting setting)
    {
        Type t = Nullable.GetUnderlyingType(setting.Property.PropertyType) ?? setting.Property.PropertyType;
        if (t == typeof(string))
        {
            return ["abc", "-1", Absurd, "1E+30"];
        }

        if (t == typeof(bool))
        {
            return ["abc", "-1", Absurd, "1E+30"];
        }

        if (t.IsEnum)
        {
            return ["abc", "-1", "99", Absurd, "1E+30"]; // numbers are refused although the binder would take them
        }

        if (t == typeof(int) || t == typeof(long))
        {
            return ["abc", "true", "-1", "-9223372036854775809", Absurd, "1E+30", "NaN"];
        }

        throw new NotSupportedException($"{setting.Key}: no bad values for type {t}.");
    }

    // ---- the cases ----

    public static TheoryData<string, string> BadValues()
    {
        var data = new TheoryData<string, string>();
        foreach (Setting setting in Settings())
        {
            if (Cases.TryGetValue(setting.Key, out var c))
            {
                foreach (string value in BadValuesFor(setting).Concat(c.Extra).Distinct())
                {
                    data.Add(setting.Key, value);
                }
            }
        }

        return data;
    }

    public static TheoryData<string> Keys()
    {
        var data = new TheoryData<string>();
        foreach (Setting setting in Settings())
        {
            data.Add(setting.Key);
        }

        return data;
    }

    public static TheoryData<string> Sections()
    {
        var data = new TheoryData<string>();
        foreach ((string path, _) in FixedSections())
        {
            data.Add(path);
        }

        return data;
    }

    // ---- completeness ----

    [Fact]
    public void Every_bindable_key_has_a_sweep_case()
    {
        IReadOnlyList<Setting> settings = Settings();
        string[] bound = settings.Select(s => s.Key).Order(StringComparer.Ordinal).ToArray();
        Assert.Equal(Cases.Keys.Order(StringComparer.Ordinal), bound);
        Assert.Equal(
            settings.Where(s => s.Property.PropertyType != typeof(bool)).Select(s => s.Key).Order(StringComparer.Ordinal),
            CodeCases.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(12, bound.Length); // the keys of this version; a new one needs cases above, then this number
    }

    [Fact]
    public void The_sections_found_by_reflection_are_the_ones_the_configuration_has()
    {
        Assert.Equal(
            ["", "Debug", "Tracing", "Limits", "Limits:Raw", "Limits:Mem", "Limits:Obj", $"Limits:Tags:{SampleTag}"],
            FixedSections().Select(s => s.Path));
    }

    // ---- configuration: every key, every bad value ----

    [Theory]
    [MemberData(nameof(BadValues))]
    public void A_bad_value_for_any_key_stops_the_start_naming_the_key_the_value_and_the_allowed_values(string key, string value)
    {
        string allowed = Cases[key].Allowed;
        foreach (Entry entry in Entries)
        {
            string path = $"{entry.SectionPath}:{key}";
            foreach (Start start in Starts)
            {
                IReadOnlyList<string> failures = StartFails(entry, start, new() { [path] = value });
                string failure = Assert.Single(failures);
                Assert.Contains($"{path} = '{value}': ", failure);
                Assert.Contains($"Allowed values: {allowed}", failure);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Keys))]
    public void An_object_where_any_value_belongs_stops_the_start_naming_the_key_and_the_allowed_values(string key)
    {
        string allowed = Cases[key].Allowed;
        foreach (Entry entry in Entries)
        {
            string path = $"{entry.SectionPath}:{key}";
            foreach (Start start in Starts)
            {
                string failure = Assert.Single(StartFails(entry, start, new() { [$"{path}:Value"] = "1" }));
                Assert.StartsWith(path + " ", failure);
                Assert.Contains(key == "Allocator" ? "must be a string, not an object." : "'(an object)'", failure);
                Assert.Contains($"Allowed values: {allowed}", failure);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Sections))]
    public void An_unknown_key_in_any_section_stops_the_start_naming_it_and_the_allowed_keys(string section)
    {
        string[] known = FixedSections().Single(s => s.Path == section).Keys;
        foreach (Entry entry in Entries)
        {
            string path = section.Length == 0 ? entry.SectionPath : $"{entry.SectionPath}:{section}";
            foreach (Start start in Starts)
            {
                string failure = Assert.Single(StartFails(entry, start, new() { [$"{path}:Framez"] = "5" }));
                Assert.Equal($"{path}:Framez is not a setting of {path}. Allowed keys: {string.Join(", ", known)}.", failure);
            }
        }
    }

    [Theory]
    [MemberData(nameof(Sections))]
    public void A_value_where_any_section_belongs_stops_the_start_naming_it_and_the_allowed_keys(string section)
    {
        string[] known = FixedSections().Single(s => s.Path == section).Keys;
        foreach (Entry entry in Entries)
        {
            string path = section.Length == 0 ? entry.SectionPath : $"{entry.SectionPath}:{section}";
            foreach (Start start in Starts)
            {
                string failure = Assert.Single(StartFails(entry, start, new() { [path] = "abc" }));
                Assert.Equal($"{path} = 'abc': {path} must be a section with keys, not a value. Allowed keys: {string.Join(", ", known)}.", failure);
            }
        }
    }

    [Fact]
    public void Keys_that_are_wrong_together_are_all_reported_at_once_the_allocator_name_included()
    {
        var settings = new Dictionary<string, string?>();
        foreach (Setting setting in Settings())
        {
            settings[$"RuntimeMemory:{setting.Key}"] = "abc";
        }

        settings["RuntimeMemory:Tracing:Framez"] = "5";
        using (ServiceProvider provider = Build(Entries[0], settings))
        {
            var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IRuntimeMemory>());
            // Every wrong key in one report, the allocator name included (it is checked on the section too, not only
            // on the bound options, which a section with a wrong key never becomes).
            foreach (Setting setting in Settings())
            {
                Assert.Single(error.Failures, f => f.StartsWith($"RuntimeMemory:{setting.Key} = 'abc': ", StringComparison.Ordinal));
            }

            Assert.Single(error.Failures, f => f.StartsWith("RuntimeMemory:Tracing:Framez is not a setting", StringComparison.Ordinal));
            Assert.Equal(Settings().Count + 1, error.Failures.Count());
        }

        using (ServiceProvider provider = Build(Entries[0], new() { ["RuntimeMemory:Allocator"] = "abc" }))
        {
            var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IRuntimeMemory>());
            Assert.StartsWith("RuntimeMemory:Allocator = 'abc': not an allocator name. Allowed values: ", Assert.Single(error.Failures));
        }
    }

    [Fact]
    public void Key_names_match_ignoring_case_so_a_differently_cased_key_is_not_unknown()
    {
        var settings = new Dictionary<string, string?>();
        foreach (Setting setting in Settings())
        {
            settings[$"runtimememory:{setting.Key.ToUpperInvariant().Replace(SampleTag.ToUpperInvariant(), SampleTag, StringComparison.Ordinal)}"] = GoodValue(setting);
        }

        using ServiceProvider provider = Build(Entries[0], settings);
        using var runtime = (RuntimeMemory)provider.GetRequiredService<IRuntimeMemory>();
        Assert.Equal("malloc", runtime.AllocatorName);
        Assert.True(runtime.Tracer.IsTracing);
        Assert.Equal(ViolationAction.Log, runtime.Debugger.OnViolation);
        runtime.Tracer.Stop();
    }

    // ---- in code: every key that can be wrong in code ----

    [Theory]
    [MemberData(nameof(Keys))]
    public void A_bad_value_set_in_code_for_any_key_is_refused_naming_the_key_the_value_and_the_allowed_values(string key)
    {
        if (!CodeCases.TryGetValue(key, out object? bad))
        {
            Assert.Equal(typeof(bool), Settings().Single(s => s.Key == key).Property.PropertyType); // only booleans have none
            return;
        }

        string expected = $"RuntimeMemory:{key} = '{Convert.ToString(bad, CultureInfo.InvariantCulture)}': ";
        string allowed = $"Allowed values: {Cases[key].Allowed}";

        var direct = Assert.Throws<OptionsValidationException>(() => RuntimeMemory.Create(Options(key, bad)));
        string failure = Assert.Single(direct.Failures);
        Assert.StartsWith(expected, failure);
        Assert.Contains(allowed, failure);

        var services = new ServiceCollection();
        services.AddRuntimeMemory(o => SetByKey(o, key, bad));
        using ServiceProvider provider = services.BuildServiceProvider();
        failure = Assert.Single(Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IRuntimeMemory>()).Failures);
        Assert.StartsWith(expected, failure);
        Assert.Contains(allowed, failure);
    }

    // ---- the edges of what is allowed start ----

    [Fact]
    public void The_largest_allowed_value_of_every_numeric_key_starts_and_the_runtime_allocates()
    {
        var settings = new Dictionary<string, string?>
        {
            ["RuntimeMemory:Allocator"] = "pymalloc_debug",
            ["RuntimeMemory:Tracing:Enabled"] = "true",
        };
        foreach (Setting setting in Settings())
        {
            Type t = Nullable.GetUnderlyingType(setting.Property.PropertyType) ?? setting.Property.PropertyType;
            if (t == typeof(int) || t == typeof(long))
            {
                settings[$"RuntimeMemory:{setting.Key}"] = setting.Key == "Tracing:Frames"
                    ? RuntimeMemoryTracingOptions.MaxFrames.ToString(CultureInfo.InvariantCulture)
                    : (t == typeof(int) ? int.MaxValue : long.MaxValue).ToString(CultureInfo.InvariantCulture);
            }
        }

        Assert.Equal(3 + 6, settings.Count); // QuarantineBytes, Frames, SampleBytes, and the budgets of three domains and a tag
        using ServiceProvider provider = Build(Entries[0], settings);
        using var runtime = (RuntimeMemory)provider.ValidateRuntimeMemory();
        // A budget of long.MaxValue bytes is the library's "no budget" (Budget.None): it reads back as none.
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            Assert.Null(runtime[kind].MaxBytes);
        }

        Assert.Null(runtime.Tag(SampleTag).MaxBytes);
        Assert.Equal(long.MaxValue, runtime.Tracer.SampleBytes);
        Assert.Equal(RuntimeMemoryTracingOptions.MaxFrames, runtime.Tracer.TracebackLimit);
        Assert.Equal(long.MaxValue, runtime.Debugger.QuarantineBytes); // never full: freed blocks wait for a flush
        AllocatesEverywhere(runtime);
        runtime.Tracer.Stop();
    }

    [Fact]
    public void The_smallest_allowed_value_of_every_numeric_key_starts_and_the_runtime_allocates()
    {
        using ServiceProvider provider = Build(Entries[0], new()
        {
            ["RuntimeMemory:Allocator"] = "malloc",
            ["RuntimeMemory:Debug:QuarantineBytes"] = "0",
            ["RuntimeMemory:Tracing:Enabled"] = "true",
            ["RuntimeMemory:Tracing:Frames"] = "1",
            ["RuntimeMemory:Tracing:SampleBytes"] = "0",
            ["RuntimeMemory:Limits:Raw:MaxBytes"] = "1",
            ["RuntimeMemory:Limits:Mem:MaxBytes"] = "1",
            ["RuntimeMemory:Limits:Obj:MaxBytes"] = "1",
            [$"RuntimeMemory:Limits:Tags:{SampleTag}:MaxBytes"] = "1",
        });
        using var runtime = (RuntimeMemory)provider.ValidateRuntimeMemory();
        unsafe
        {
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                void* p = runtime[kind].Malloc(1);
                Assert.True(p != null, $"{kind}: a one-byte budget holds one byte");
                Assert.True(runtime[kind].Malloc(1) == null, $"{kind}: and no more");
                runtime[kind].Free(p);
                Assert.Equal(0, runtime[kind].LiveBytes);
            }
        }

        runtime.Tracer.Stop();
    }

    // ---- helpers ----

    /// <summary>How the options reach the service: the path overload (the default section) or the section overload.</summary>
    public sealed record Entry(string SectionPath, bool SectionOverload);

    private static readonly Entry[] Entries = [new("RuntimeMemory", SectionOverload: false), new("Interp:Memory", SectionOverload: true)];

    /// <summary>How the service is started.</summary>
    public enum Start
    {
        Resolve,
        Validate,
        GenericHost,
    }

    private static readonly Start[] Starts = Enum.GetValues<Start>();

    private static ServiceProvider Build(Entry entry, Dictionary<string, string?> settings)
    {
        IConfiguration configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var services = new ServiceCollection();
        services.AddSingleton(configuration);
        if (entry.SectionOverload)
        {
            services.AddRuntimeMemory(configuration.GetSection(entry.SectionPath));
        }
        else
        {
            services.AddRuntimeMemory();
        }

        return services.BuildServiceProvider();
    }

    /// <summary>Starts the service with <paramref name="settings"/>, which must fail; the failures reported.</summary>
    private static IReadOnlyList<string> StartFails(Entry entry, Start start, Dictionary<string, string?> settings)
    {
        OptionsValidationException error;
        if (start == Start.GenericHost)
        {
            HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
            builder.Configuration.AddInMemoryCollection(settings);
            if (entry.SectionOverload)
            {
                builder.Services.AddRuntimeMemory(builder.Configuration.GetSection(entry.SectionPath));
            }
            else
            {
                builder.Services.AddRuntimeMemory();
            }

            using IHost host = builder.Build();
            error = Assert.Throws<OptionsValidationException>(() => host.StartAsync().GetAwaiter().GetResult());
        }
        else
        {
            using ServiceProvider provider = Build(entry, settings);
            error = start == Start.Resolve
                ? Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IRuntimeMemory>())
                : Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory());
        }

        Assert.Equal(typeof(RuntimeMemoryOptions), error.OptionsType);
        Assert.Equal(string.Join("; ", error.Failures), error.Message); // the message is the failures, nothing lost
        return error.Failures.ToArray();
    }

    private static string GoodValue(Setting setting)
    {
        Type t = Nullable.GetUnderlyingType(setting.Property.PropertyType) ?? setting.Property.PropertyType;
        return setting.Key switch
        {
            "Allocator" => "Malloc",
            "Debug:OnViolation" => "log",
            _ when t == typeof(bool) => setting.Key == "Tracing:Enabled" ? "TRUE" : "false",
            _ => "4096",
        };
    }

    private static RuntimeMemoryOptions Options(string key, object value)
    {
        var options = new RuntimeMemoryOptions();
        SetByKey(options, key, value);
        return options;
    }

    /// <summary>Sets the property at <paramref name="key"/> (as configuration names it), creating dictionary entries on the way.</summary>
    private static void SetByKey(object options, string key, object value)
    {
        string[] parts = key.Split(':');
        object target = options;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            PropertyInfo property = target.GetType().GetProperty(parts[i])!;
            object next = property.GetValue(target)!;
            if (DictionaryValueType(property.PropertyType) is { } valueType)
            {
                var dictionary = (IDictionary)next;
                string entry = parts[++i];
                if (!dictionary.Contains(entry))
                {
                    dictionary[entry] = Activator.CreateInstance(valueType)!;
                }

                next = dictionary[entry]!;
            }

            target = next;
        }

        target.GetType().GetProperty(parts[^1])!.SetValue(target, value);
    }

    private static unsafe void AllocatesEverywhere(RuntimeMemory runtime)
    {
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            foreach (nuint size in new nuint[] { 1, 64, 512, 513, 4096 })
            {
                void* p = runtime[kind].Malloc(size);
                Assert.True(p != null, $"{kind}: malloc({size}) failed under the largest allowed settings");
                runtime[kind].Free(p);
            }

            Assert.Equal(0, runtime[kind].LiveBlocks);
        }

        Assert.Equal(0, runtime.Debugger.Violations);
    }
}
