using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Runtime.Memory;
using Runtime.Memory.Allocators;
using Runtime.Memory.Buffers;
using Runtime.Memory.Debugging;
using Runtime.Memory.Hosting;
using Runtime.Memory.Tracing;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// Configures the memory service that <c>AddRuntimeMemory</c> added: what a host chooses in code rather than in
/// <c>appsettings.json</c>. Each method returns the builder, so calls chain:
/// <code>
/// services.AddRuntimeMemory()
///     .UseAllocator(AllocatorNames.Malloc)
///     .SetLimit(MemoryDomainKind.Obj, 64 &lt;&lt; 20)
///     .AddHook(MemoryDomainKind.Obj, sp => new MyHook());
/// </code>
/// </summary>
/// <remarks>
/// Settings made here apply after the configuration section is bound, so code wins over configuration for the
/// settings it names; they are validated at start like the section (a bad value stops the host with the setting's
/// name, the value and the allowed values). Hooks and the frame provider are applied when the container creates the
/// runtime, after the allocator, the debug hooks and the limits, and before tracing starts.
/// </remarks>
public static class RuntimeMemoryBuilderExtensions
{
    /// <summary>Uses the built-in allocator <paramref name="name"/> (<see cref="AllocatorNames"/>) in every domain.</summary>
    public static IRuntimeMemoryBuilder UseAllocator(this IRuntimeMemoryBuilder builder, string name)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(name);
        return builder.Configure(options => options.Allocator = name);
    }

    /// <summary>
    /// Uses <typeparamref name="TProvider"/>, created by the container, to build each domain's base allocator
    /// (replacing the built-in provider and any other registered before).
    /// </summary>
    public static IRuntimeMemoryBuilder UseAllocatorProvider<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TProvider>(
        this IRuntimeMemoryBuilder builder)
        where TProvider : class, IAllocatorProvider
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.Replace(ServiceDescriptor.Singleton<IAllocatorProvider, TProvider>());
        return builder;
    }

    /// <summary>Uses <paramref name="provider"/> to build each domain's base allocator (replacing any other).</summary>
    public static IRuntimeMemoryBuilder UseAllocatorProvider(this IRuntimeMemoryBuilder builder, IAllocatorProvider provider)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(provider);
        builder.Services.Replace(ServiceDescriptor.Singleton(provider));
        return builder;
    }

    /// <summary>
    /// Installs the hook <paramref name="factory"/> creates on <paramref name="domain"/> when the runtime is created
    /// (<see cref="MemoryDomain.InstallHook"/>): above the allocator and the debug hooks, below the tracer. Hooks added
    /// by several calls are installed in call order, each above the one before. The factory is called once per
    /// runtime and must return a new hook (a hook serves one domain).
    /// </summary>
    public static IRuntimeMemoryBuilder AddHook(this IRuntimeMemoryBuilder builder, MemoryDomainKind domain, Func<IServiceProvider, MemoryHook> factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        CheckDomain(domain);

        builder.Services.AddSingleton(new RuntimeMemoryConfigureAction((sp, runtime) =>
            runtime[domain].InstallHook(factory(sp) ?? throw new InvalidOperationException($"The hook factory for the {domain.ToName()} domain returned null."))));
        return builder;
    }

    /// <summary>
    /// Uses the frame provider the container resolves as <typeparamref name="TProvider"/> for the tracer
    /// (<see cref="MemoryTracer.FrameProvider"/>): an embedded interpreter's frames instead of the managed stack.
    /// The provider is registered as a singleton unless it already is.
    /// </summary>
    public static IRuntimeMemoryBuilder UseFrameProvider<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] TProvider>(
        this IRuntimeMemoryBuilder builder)
        where TProvider : class, IFrameProvider
    {
        ArgumentNullException.ThrowIfNull(builder);
        builder.Services.TryAddSingleton<TProvider>();
        return builder.UseFrameProvider(sp => sp.GetRequiredService<TProvider>());
    }

    /// <summary>Uses the frame provider <paramref name="factory"/> returns for the tracer (<see cref="MemoryTracer.FrameProvider"/>).</summary>
    public static IRuntimeMemoryBuilder UseFrameProvider(this IRuntimeMemoryBuilder builder, Func<IServiceProvider, IFrameProvider> factory)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(factory);
        builder.Services.AddSingleton(new RuntimeMemoryConfigureAction((sp, runtime) =>
            runtime.Tracer.FrameProvider = factory(sp) ?? throw new InvalidOperationException("The frame provider factory returned null.")));
        return builder;
    }

    /// <summary>
    /// Limits <paramref name="domain"/>'s live bytes to <paramref name="maxBytes"/> (<c>RuntimeMemory:Limits:&lt;Domain&gt;:MaxBytes</c>),
    /// or removes the limit when it is null. An allocation that would pass the limit returns null (see the README's budgets).
    /// </summary>
    public static IRuntimeMemoryBuilder SetLimit(this IRuntimeMemoryBuilder builder, MemoryDomainKind domain, long? maxBytes)
    {
        ArgumentNullException.ThrowIfNull(builder);
        CheckDomain(domain);

        return builder.Configure(options => options.Limits[domain].MaxBytes = maxBytes);
    }

    /// <summary>
    /// Limits the live bytes of the library tag <paramref name="tag"/> (<c>RuntimeMemory:Limits:Tags:&lt;tag&gt;:MaxBytes</c>;
    /// <see cref="IRuntimeMemory.Tag"/>), or removes the limit when it is null.
    /// </summary>
    public static IRuntimeMemoryBuilder SetTagLimit(this IRuntimeMemoryBuilder builder, string tag, long? maxBytes)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrWhiteSpace(tag);
        return builder.Configure(options =>
        {
            if (!options.Limits.Tags.TryGetValue(tag, out RuntimeMemoryBudgetOptions? budget))
            {
                options.Limits.Tags[tag] = budget = new RuntimeMemoryBudgetOptions();
            }

            budget.MaxBytes = maxBytes;
        });
    }

    /// <summary>
    /// Traces allocations from the start (<c>RuntimeMemory:Tracing</c>): <paramref name="frames"/> frames per traceback,
    /// every allocation when <paramref name="sampleBytes"/> is 0, else one sample per that many bytes on average.
    /// </summary>
    public static IRuntimeMemoryBuilder EnableTracing(this IRuntimeMemoryBuilder builder, int frames = 1, long sampleBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Configure(options =>
        {
            options.Tracing.Enabled = true;
            options.Tracing.Frames = frames;
            options.Tracing.SampleBytes = sampleBytes;
        });
    }

    /// <summary>
    /// Installs the debug hooks on every domain (the allocator's <c>_debug</c> variant, <c>RuntimeMemory:Allocator</c>),
    /// reacting to a misuse with <paramref name="onViolation"/>, with guard pages when <paramref name="guardPages"/>.
    /// </summary>
    public static IRuntimeMemoryBuilder UseDebugHooks(this IRuntimeMemoryBuilder builder, ViolationAction onViolation = ViolationAction.FailFast, bool guardPages = false)
    {
        ArgumentNullException.ThrowIfNull(builder);
        return builder.Configure(options =>
        {
            options.Allocator = AllocatorNames.WithDebug(options.Allocator)!;

            options.Debug.OnViolation = onViolation;
            options.Debug.GuardPages = guardPages;
        });
    }

    /// <summary>
    /// Makes the <see cref="System.Buffers.MemoryPool{T}"/> (and <see cref="RuntimeMemoryPool"/>) the container hands
    /// out the pool of <paramref name="domain"/>; without this call it is the <c>obj</c> domain's.
    /// </summary>
    public static IRuntimeMemoryBuilder UseMemoryPool(this IRuntimeMemoryBuilder builder, MemoryDomainKind domain)
    {
        ArgumentNullException.ThrowIfNull(builder);
        CheckDomain(domain);

        builder.Services.Replace(ServiceDescriptor.Singleton(sp => sp.GetRequiredService<IRuntimeMemory>()[domain].AsMemoryPool()));
        return builder;
    }

    /// <summary>Changes the options in code, after the configuration section is bound.</summary>
    public static IRuntimeMemoryBuilder Configure(this IRuntimeMemoryBuilder builder, Action<RuntimeMemoryOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(configure);
        builder.Services.Configure(configure);
        return builder;
    }

    private static void CheckDomain(MemoryDomainKind domain, [System.Runtime.CompilerServices.CallerArgumentExpression(nameof(domain))] string? parameter = null)
    {
        if (!Enum.IsDefined(domain))
        {
            throw new ArgumentOutOfRangeException(parameter, domain, "Not a memory domain: use Raw, Mem or Obj.");
        }
    }
}
