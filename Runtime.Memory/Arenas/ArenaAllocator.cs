using Runtime.Memory.Platform;

namespace Runtime.Memory.Arenas;

/// <summary>
/// Where the small-object allocator gets its arenas: PEP 445's <c>PyObjectArenaAllocator</c>
/// (<c>{ctx, alloc(size), free(ptr, size)}</c>), swappable with <see cref="SmallObjectAllocator.ArenaAllocator"/>.
/// </summary>
/// <remarks>
/// <see cref="Alloc"/> returns <see cref="SmallObjectAllocator.ArenaSize"/> bytes or null; the memory need not be
/// zeroed. Arenas aligned to their size lose nothing; any other alignment costs one pool per arena (reported as
/// "bytes lost to arena alignment"). <see cref="Free"/> receives the size given to <see cref="Alloc"/>, as
/// <c>munmap</c> needs. Both must be thread-safe and must not throw.
/// </remarks>
public abstract unsafe class ArenaAllocator
{
    /// <summary>A short name for reports.</summary>
    public virtual string Name => GetType().Name;

    /// <summary>Allocates an arena of <paramref name="size"/> bytes; null on failure.</summary>
    public abstract void* Alloc(nuint size);

    /// <summary>Releases an arena returned by <see cref="Alloc"/> with the same <paramref name="size"/>.</summary>
    public abstract void Free(void* ptr, nuint size);
}
