using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>
/// PEP 445's <c>PyObjectArenaAllocator</c>, <c>rtmem_arena_allocator</c> in <c>runtime_mem.h</c>:
/// <c>{ ctx, alloc, free }</c>; <c>free</c> receives the size given to <c>alloc</c>.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct RtMemArenaAllocator : IEquatable<RtMemArenaAllocator>
{
    /// <summary>Passed back to both functions.</summary>
    public void* Ctx;

    /// <summary><c>void *alloc(void *ctx, size_t size)</c>.</summary>
    public delegate* unmanaged<void*, nuint, void*> Alloc;

    /// <summary><c>void free(void *ctx, void *ptr, size_t size)</c>.</summary>
    public delegate* unmanaged<void*, void*, nuint, void> Free;

    /// <summary>Whether both function pointers are set.</summary>
    public readonly bool IsComplete => Alloc != null && Free != null;

    /// <inheritdoc/>
    public readonly bool Equals(RtMemArenaAllocator other) => Ctx == other.Ctx && (nint)Alloc == (nint)other.Alloc && (nint)Free == (nint)other.Free;

    /// <inheritdoc/>
    public override readonly bool Equals(object? obj) => obj is RtMemArenaAllocator other && Equals(other);

    /// <inheritdoc/>
    public override readonly int GetHashCode() => HashCode.Combine((nint)Ctx, (nint)Alloc, (nint)Free);

    /// <summary>Field-by-field equality.</summary>
    public static bool operator ==(RtMemArenaAllocator left, RtMemArenaAllocator right) => left.Equals(right);

    /// <summary>Field-by-field inequality.</summary>
    public static bool operator !=(RtMemArenaAllocator left, RtMemArenaAllocator right) => !left.Equals(right);
}
