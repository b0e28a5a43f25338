using Microsoft.Extensions.Options;
using Runtime.Memory.Hosting;

namespace Runtime.Memory.Allocators;

/// <summary>
/// Chooses the base allocator of each domain when a <see cref="RuntimeMemory"/> is created. The DI registration is
/// a <c>TryAdd</c>, so a test or host that registers its own provider first (a fake, a recording allocator) wins.
/// </summary>
public interface IAllocatorProvider
{
    /// <summary>The name reported as the runtime's allocator.</summary>
    string Name { get; }

    /// <summary>
    /// A new base allocator for <paramref name="domain"/>: a plain allocator, or a chain of hooks over one.
    /// Called once per domain per runtime; a hook instance must not be returned for two domains.
    /// </summary>
    MemoryAllocator CreateBaseAllocator(MemoryDomainKind domain);
}
