using Runtime.Memory.Platform;

namespace Runtime.Memory.Arenas;

/// <summary>
/// The default arena allocator: fresh OS pages (<c>mmap</c> on Unix, <c>VirtualAlloc</c> on Windows), aligned to the
/// arena size, given back to the OS on free so resident memory drops.
/// </summary>
public sealed unsafe class OsArenaAllocator : ArenaAllocator
{
    /// <summary>The shared instance (the allocator is stateless).</summary>
    public static OsArenaAllocator Instance { get; } = new();

    /// <inheritdoc/>
    public override string Name => "os-pages";

    /// <inheritdoc/>
    public override void* Alloc(nuint size) =>
        nuint.IsPow2(size) ? OsPages.MapAligned(size, size) : OsPages.Map(size);

    /// <inheritdoc/>
    public override void Free(void* ptr, nuint size) => OsPages.Unmap(ptr, size);
}
