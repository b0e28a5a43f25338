using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>An arena allocator written in C (<see cref="RtMemArenaAllocator"/>), for <see cref="SmallObjectAllocator.ArenaAllocator"/>.</summary>
public sealed unsafe class NativeArenaAllocator : ArenaAllocator
{
    private readonly RtMemArenaAllocator _native;

    /// <summary>Wraps <paramref name="native"/>, whose two functions must be set.</summary>
    /// <exception cref="ArgumentException">A function pointer is null.</exception>
    public NativeArenaAllocator(RtMemArenaAllocator native)
    {
        if (!native.IsComplete)
        {
            throw new ArgumentException("A native arena allocator needs both functions: alloc and free.", nameof(native));
        }

        _native = native;
    }

    /// <inheritdoc/>
    public override string Name => "native-arenas";

    /// <summary>The C struct.</summary>
    public RtMemArenaAllocator Native => _native;

    /// <inheritdoc/>
    public override void* Alloc(nuint size) => _native.Alloc(_native.Ctx, size);

    /// <inheritdoc/>
    public override void Free(void* ptr, nuint size) => _native.Free(_native.Ctx, ptr, size);
}
