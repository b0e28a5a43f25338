using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>
/// A hook written in C (PEP 445 use case 3 from C): installed over a domain's current allocator, which the C code
/// received as its "previous" allocator and calls itself. The block layout is assumed unchanged (the C hook forwards),
/// so <see cref="MemoryHook.BlockSize"/> asks the allocator below.
/// </summary>
public sealed unsafe class NativeHook : MemoryHook, INativeAllocatorView
{
    private readonly RtMemAllocator _native;

    /// <summary>Wraps <paramref name="native"/>, whose four functions must be set.</summary>
    /// <exception cref="ArgumentException">A function pointer is null.</exception>
    public NativeHook(RtMemAllocator native)
    {
        if (!native.IsComplete)
        {
            throw new ArgumentException("A native hook needs all four functions: malloc, calloc, realloc and free.", nameof(native));
        }

        _native = native;
    }

    /// <inheritdoc/>
    public override string Name => "native-hook";

    /// <summary>The C struct.</summary>
    public RtMemAllocator Native => _native;

    /// <inheritdoc/>
    public override void* Malloc(nuint size) => _native.Malloc(_native.Ctx, size);

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size) => _native.Calloc(_native.Ctx, count, size);

    /// <inheritdoc/>
    public override void* Realloc(void* ptr, nuint newSize) => _native.Realloc(_native.Ctx, ptr, newSize);

    /// <inheritdoc/>
    public override void Free(void* ptr) => _native.Free(_native.Ctx, ptr);
}
