using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>
/// PEP 445's <c>PyMemAllocatorEx</c> as C sees it, <c>rtmem_allocator</c> in <c>runtime_mem.h</c>:
/// <c>{ ctx, malloc, calloc, realloc, free }</c> in that field order, every function taking <c>ctx</c> first.
/// </summary>
/// <remarks>
/// What <see cref="NativeApi"/>'s <c>get_allocator</c> returns for a domain, <c>set_allocator</c> restores exactly:
/// a struct describing a managed allocator carries the runtime's own entry points and a handle in <c>ctx</c>, and is
/// recognised on the way back; a struct written in C is called as it is.
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct RtMemAllocator : IEquatable<RtMemAllocator>
{
    /// <summary>Passed back to every function.</summary>
    public void* Ctx;

    /// <summary><c>void *malloc(void *ctx, size_t size)</c>.</summary>
    public delegate* unmanaged<void*, nuint, void*> Malloc;

    /// <summary><c>void *calloc(void *ctx, size_t nelem, size_t elsize)</c>.</summary>
    public delegate* unmanaged<void*, nuint, nuint, void*> Calloc;

    /// <summary><c>void *realloc(void *ctx, void *ptr, size_t new_size)</c>.</summary>
    public delegate* unmanaged<void*, void*, nuint, void*> Realloc;

    /// <summary><c>void free(void *ctx, void *ptr)</c>.</summary>
    public delegate* unmanaged<void*, void*, void> Free;

    /// <summary>Whether every function pointer is set.</summary>
    public readonly bool IsComplete => Malloc != null && Calloc != null && Realloc != null && Free != null;

    /// <inheritdoc/>
    public readonly bool Equals(RtMemAllocator other) =>
        Ctx == other.Ctx && (nint)Malloc == (nint)other.Malloc && (nint)Calloc == (nint)other.Calloc
        && (nint)Realloc == (nint)other.Realloc && (nint)Free == (nint)other.Free;

    /// <inheritdoc/>
    public override readonly bool Equals(object? obj) => obj is RtMemAllocator other && Equals(other);

    /// <inheritdoc/>
    public override readonly int GetHashCode() => HashCode.Combine((nint)Ctx, (nint)Malloc, (nint)Free);

    /// <summary>Field-by-field equality.</summary>
    public static bool operator ==(RtMemAllocator left, RtMemAllocator right) => left.Equals(right);

    /// <summary>Field-by-field inequality.</summary>
    public static bool operator !=(RtMemAllocator left, RtMemAllocator right) => !left.Equals(right);
}
