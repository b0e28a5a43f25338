using Microsoft.Extensions.DependencyInjection.Extensions;
using Runtime.Memory.Allocators;
using Runtime.Memory.Testing;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Swaps the memory service's allocators for fakes in a test's container, in one line.</summary>
public static class RuntimeMemoryBuilderTestingExtensions
{
    /// <summary>
    /// Builds every domain on a <see cref="FakeAllocatorProvider"/> (recording, with fault injection) over the system
    /// allocator, replacing the configured allocator. The fake is registered as a singleton: resolve
    /// <see cref="FakeAllocatorProvider"/> to read the calls or make requests fail.
    /// <code>
    /// services.AddRuntimeMemory().UseFakeAllocator();
    /// </code>
    /// </summary>
    public static IRuntimeMemoryBuilder UseFakeAllocator(this IRuntimeMemoryBuilder builder) => builder.UseFakeAllocator(new FakeAllocatorProvider());

    /// <summary>Builds every domain on <paramref name="fake"/>, replacing the configured allocator.</summary>
    public static IRuntimeMemoryBuilder UseFakeAllocator(this IRuntimeMemoryBuilder builder, FakeAllocatorProvider fake)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(fake);
        builder.Services.Replace(ServiceDescriptor.Singleton(fake));
        builder.Services.Replace(ServiceDescriptor.Singleton<IAllocatorProvider>(fake));
        return builder;
    }
}
