using Runtime.Memory.Allocators;

namespace Runtime.Memory.Testing;

/// <summary>Which allocator method a <see cref="RecordedCall"/> was.</summary>
public enum AllocatorOperation
{
    /// <summary><see cref="MemoryAllocator.Malloc"/>.</summary>
    Malloc,

    /// <summary><see cref="MemoryAllocator.Calloc"/>.</summary>
    Calloc,

    /// <summary><see cref="MemoryAllocator.Realloc"/>.</summary>
    Realloc,

    /// <summary><see cref="MemoryAllocator.Free"/>.</summary>
    Free,
}
