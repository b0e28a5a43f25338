using Microsoft.Extensions.Options;
using Runtime.Memory.Hosting;

namespace Runtime.Memory.Allocators;

/// <summary>Maps the <c>RuntimeMemory:Allocator</c> name to the built-in allocators.</summary>
public sealed class DefaultAllocatorProvider : IAllocatorProvider
{
    private readonly string _name;

    /// <summary>A provider for <paramref name="options"/>' allocator name.</summary>
    /// <exception cref="ArgumentException">The name is unknown or its backend is not in this build.</exception>
    public DefaultAllocatorProvider(RuntimeMemoryOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string? problem = RuntimeMemoryOptionsValidator.DescribeAllocatorProblem(options.Allocator);
        if (problem is not null)
        {
            throw new ArgumentException($"Allocator '{options.Allocator}': {problem}", nameof(options));
        }

        _name = AllocatorNames.Normalize(options.Allocator)!;
    }

    /// <summary>The DI constructor.</summary>
    public DefaultAllocatorProvider(IOptions<RuntimeMemoryOptions> options)
        : this(options?.Value ?? throw new ArgumentNullException(nameof(options)))
    {
    }

    /// <inheritdoc/>
    public string Name => _name;

    /// <inheritdoc/>
    /// <remarks>
    /// <c>default</c> and <c>pymalloc</c>: a <see cref="SmallObjectAllocator"/> for mem and for obj (one each, so the
    /// domains share no arenas), the <see cref="SystemAllocator"/> for raw, as in CPython. <c>malloc</c>: the system
    /// allocator everywhere. <c>mimalloc</c>: the <see cref="MimallocAllocator"/> everywhere. A debug name (<c>debug</c>, <c>malloc_debug</c>, <c>pymalloc_debug</c>, <c>mimalloc_debug</c>) returns the allocator
    /// of the name without <c>_debug</c>; the runtime installs the debug hooks over it.
    /// </remarks>
    public MemoryAllocator CreateBaseAllocator(MemoryDomainKind domain) => AllocatorNames.WithoutDebug(_name) switch
    {
        AllocatorNames.Default or AllocatorNames.Pymalloc when domain != MemoryDomainKind.Raw => new SmallObjectAllocator(),
        AllocatorNames.Default or AllocatorNames.Pymalloc or AllocatorNames.Malloc => new SystemAllocator(),
        AllocatorNames.Mimalloc => new MimallocAllocator(),
        _ => throw new InvalidOperationException($"Allocator '{_name}' has no backend in this build."),
    };
}
