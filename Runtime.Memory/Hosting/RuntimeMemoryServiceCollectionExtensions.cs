using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Runtime.Memory.Buffers;
using OptionsName = Microsoft.Extensions.Options.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the memory service in a service collection.</summary>
/// <remarks>
/// Every default is registered with <c>TryAdd</c>: a test that registers its own <see cref="IAllocatorProvider"/>
/// (or <see cref="IRuntimeMemory"/>) first keeps it. Options are validated at start (<c>ValidateOnStart</c>); a
/// host that does not start a generic host calls <see cref="ValidateRuntimeMemory"/> right after building the
/// provider. A bad setting fails with one message naming the key, the value and the allowed values.
/// </remarks>
public static class RuntimeMemoryServiceCollectionExtensions
{
    /// <summary>
    /// Adds the memory service, bound to the configuration section at <paramref name="configSectionPath"/> of the
    /// <see cref="IConfiguration"/> registered in the container (the generic host registers one). Without one (a bare
    /// <see cref="ServiceCollection"/>), the service runs on the defaults of <see cref="RuntimeMemoryOptions"/>.
    /// </summary>
    public static IRuntimeMemoryBuilder AddRuntimeMemory(
        this IServiceCollection services, string configSectionPath = RuntimeMemoryOptions.DefaultSectionName)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configSectionPath);
        services.AddOptions<RuntimeMemoryOptions>()
            .Configure<IServiceProvider, ReloadState>((options, sp, state) =>
            {
                if (sp.GetService<IConfiguration>() is { } configuration)
                {
                    BindChecked(configuration.GetSection(configSectionPath), options, state);
                }
            });
        services.AddSingleton<IOptionsChangeTokenSource<RuntimeMemoryOptions>>(sp =>
            sp.GetService<IConfiguration>() is { } configuration
                ? new ConfigurationChangeTokenSource<RuntimeMemoryOptions>(OptionsName.DefaultName, configuration.GetSection(configSectionPath))
                : new NoChanges());
        AddSectionValidator(services, sp => sp.GetService<IConfiguration>()?.GetSection(configSectionPath));
        return AddCore(services);
    }

    /// <summary>The change token source without a configuration: nothing ever changes.</summary>
    private sealed class NoChanges : IOptionsChangeTokenSource<RuntimeMemoryOptions>
    {
        public string Name => OptionsName.DefaultName;

        public Microsoft.Extensions.Primitives.IChangeToken GetChangeToken() => Never.Instance;

        private sealed class Never : Microsoft.Extensions.Primitives.IChangeToken, IDisposable
        {
            public static readonly Never Instance = new();

            public bool HasChanged => false;

            public bool ActiveChangeCallbacks => false;

            public IDisposable RegisterChangeCallback(Action<object?> callback, object? state) => this;

            public void Dispose()
            {
            }
        }
    }

    /// <summary>Adds the memory service, bound to <paramref name="section"/> (e.g. <c>configuration.GetSection("RuntimeMemory")</c>).</summary>
    public static IRuntimeMemoryBuilder AddRuntimeMemory(this IServiceCollection services, IConfigurationSection section)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(section);
        services.AddOptions<RuntimeMemoryOptions>().Configure<ReloadState>((options, state) => BindChecked(section, options, state));
        services.AddSingleton<IOptionsChangeTokenSource<RuntimeMemoryOptions>>(
            new ConfigurationChangeTokenSource<RuntimeMemoryOptions>(OptionsName.DefaultName, section));
        AddSectionValidator(services, _ => section);
        return AddCore(services);
    }

    /// <summary>Adds the memory service, configured in code.</summary>
    public static IRuntimeMemoryBuilder AddRuntimeMemory(this IServiceCollection services, Action<RuntimeMemoryOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.Configure(configure);
        return AddCore(services);
    }

    /// <summary>
    /// Validates the memory options now and creates the service, for hosts that build a service provider without
    /// starting a generic host (which would run <c>ValidateOnStart</c> itself).
    /// </summary>
    /// <exception cref="OptionsValidationException">A setting is invalid.</exception>
    public static IRuntimeMemory ValidateRuntimeMemory(this IServiceProvider services)
    {
        ArgumentNullException.ThrowIfNull(services);
        _ = services.GetRequiredService<IOptions<RuntimeMemoryOptions>>().Value; // runs every IValidateOptions
        return services.GetRequiredService<IRuntimeMemory>();
    }

    private static IRuntimeMemoryBuilder AddCore(IServiceCollection services)
    {
        services.AddOptions<RuntimeMemoryOptions>().ValidateOnStart();
        services.TryAddSingleton<ReloadState>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<RuntimeMemoryOptions>, CodeOptionsValidator>());
        services.TryAddSingleton<IAllocatorProvider, DefaultAllocatorProvider>();
        services.TryAddSingleton(sp =>
        {
            RuntimeMemoryConfigureAction[] configure = sp.GetServices<RuntimeMemoryConfigureAction>().ToArray();
            var runtime = new RuntimeMemory(
                sp.GetRequiredService<IAllocatorProvider>(),
                sp.GetRequiredService<IOptions<RuntimeMemoryOptions>>().Value,
                sp.GetService<Microsoft.Extensions.Logging.ILoggerFactory>(),
                sp.GetService<TimeProvider>(), // a TimeProvider registered in the container (a fake in tests), else the system's
                configure.Length == 0 ? null : created =>
                {
                    foreach (RuntimeMemoryConfigureAction action in configure)
                    {
                        action.Apply(sp, created); // the builder's hooks and frame provider, in registration order
                    }
                });
            if (sp.GetService<System.Diagnostics.Metrics.IMeterFactory>() is { } meterFactory)
            {
                runtime.EnableMetrics(meterFactory); // the generic host registers a factory; elsewhere services.AddMetrics()
            }

            // From here on a configuration change applies its limits, or, if anything in it is invalid, is logged
            // and ignored: a reload must never throw on the configuration's change-notification thread.
            ReloadState state = sp.GetRequiredService<ReloadState>();
            state.Started = true;
            IOptionsMonitor<RuntimeMemoryOptions> monitor = sp.GetRequiredService<IOptionsMonitor<RuntimeMemoryOptions>>();
            runtime.FollowLimits(monitor.OnChange((options, name) =>
            {
                if (name == OptionsName.DefaultName)
                {
                    runtime.ApplyLimitsFromReload(options, state.TakeFailures());
                }
            }));
            return runtime;
        });
        services.TryAddSingleton<IRuntimeMemory>(sp => sp.GetRequiredService<RuntimeMemory>());

        // Safe buffers from the container: the obj domain's shared pool (UseMemoryPool chooses another domain). Its
        // Dispose does nothing, so the container's disposal at shutdown leaves the runtime to free what is still rented.
        services.TryAddSingleton(sp => sp.GetRequiredService<IRuntimeMemory>().Obj.AsMemoryPool());
        services.TryAddSingleton<System.Buffers.MemoryPool<byte>>(sp => sp.GetRequiredService<RuntimeMemoryPool>());
        return new Builder(services);
    }

    /// <summary>
    /// Binds <paramref name="section"/> after checking it raw, so that a value the binder cannot convert is reported
    /// like every other bad setting (key, value, allowed values) instead of as the binder's conversion error.
    /// </summary>
    /// <remarks>Once the service runs (<see cref="ReloadState.Started"/>), a bad section is not bound and does not
    /// throw: its problems are kept for the change listener, which logs them and keeps the limits it has.</remarks>
    private static void BindChecked(IConfigurationSection section, RuntimeMemoryOptions options, ReloadState state)
    {
        IReadOnlyList<string> failures = RuntimeMemoryOptionsValidator.CheckSection(section);
        if (failures.Count != 0)
        {
            if (state.Started)
            {
                state.Failures = failures;
                return;
            }

            throw new OptionsValidationException(OptionsName.DefaultName, typeof(RuntimeMemoryOptions), failures);
        }

        section.Bind(options);
        if (state.Started)
        {
            IReadOnlyList<string> bound = new RuntimeMemoryOptionsValidator(section.Path).Validate(OptionsName.DefaultName, options).Failures?.ToArray() ?? [];
            state.Failures = bound;
        }
    }

    /// <summary>
    /// Whether the service has started, and the problems of the last configuration read after that: validation
    /// throws only before the service exists, so that a bad edit of a running host's configuration cannot take it down.
    /// </summary>
    internal sealed class ReloadState
    {
        private IReadOnlyList<string> _failures = [];

        public volatile bool Started;

        public IReadOnlyList<string> Failures
        {
            get => Volatile.Read(ref _failures);
            set => Volatile.Write(ref _failures, value);
        }

        /// <summary>The problems of the read just made, cleared for the next.</summary>
        public IReadOnlyList<string> TakeFailures() => Interlocked.Exchange(ref _failures, []);
    }

    /// <summary>Registers the raw-section validator once, for the first section the service is bound to.</summary>
    private static void AddSectionValidator(IServiceCollection services, Func<IServiceProvider, IConfigurationSection?> section)
    {
        if (services.Any(d => d.ServiceType == typeof(SectionValidatorMarker)))
        {
            return;
        }

        services.AddSingleton<SectionValidatorMarker>();
        services.AddSingleton<IValidateOptions<RuntimeMemoryOptions>>(sp => section(sp) is { } bound
            ? new SectionValidator(bound, sp.GetRequiredService<ReloadState>())
            : new DefaultsValidator()); // no configuration: the options are the defaults (and what code configured)
    }

    private sealed class Builder(IServiceCollection services) : IRuntimeMemoryBuilder
    {
        public IServiceCollection Services { get; } = services;
    }

    private sealed class SectionValidatorMarker;

    /// <summary>Checks the raw section (unknown keys, wrong shapes) when the options come from configuration.</summary>
    private sealed class SectionValidator(IConfigurationSection section, ReloadState state) : IValidateOptions<RuntimeMemoryOptions>
    {
        private readonly RuntimeMemoryOptionsValidator _inner = new(section);

        public ValidateOptionsResult Validate(string? name, RuntimeMemoryOptions options) =>
            state.Started ? ValidateOptionsResult.Skip : _inner.Validate(name, options); // after start: see BindChecked
    }

    /// <summary>Checks the options when <c>AddRuntimeMemory()</c> found no configuration to bind.</summary>
    private sealed class DefaultsValidator : IValidateOptions<RuntimeMemoryOptions>
    {
        public ValidateOptionsResult Validate(string? name, RuntimeMemoryOptions options) => new RuntimeMemoryOptionsValidator().Validate(name, options);
    }

    /// <summary>Checks the bound values when no section validator applies (options configured in code).</summary>
    private sealed class CodeOptionsValidator(IServiceProvider services) : IValidateOptions<RuntimeMemoryOptions>
    {
        public ValidateOptionsResult Validate(string? name, RuntimeMemoryOptions options) =>
            services.GetService<SectionValidatorMarker>() is null
                ? new RuntimeMemoryOptionsValidator().Validate(name, options)
                : ValidateOptionsResult.Skip;
    }
}
