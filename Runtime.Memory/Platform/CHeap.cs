using System.Runtime.InteropServices;

namespace Runtime.Memory.Platform;

/// <summary>
/// The C library's heap functions, imported directly (the logical name <c>libc</c>, see <see cref="NativeLibraries"/>):
/// they return null on failure, so nothing on these paths throws. <see cref="SystemAllocator"/> is their one caller.
/// </summary>
/// <remarks>
/// <para>Linux and macOS only (glibc or musl, libSystem): Windows has no <c>libc</c> under that name.</para>
/// </remarks>
internal static unsafe partial class CHeap
{
    static CHeap() => NativeLibraries.EnsureResolver();

    /// <summary><c>void* malloc(size_t size)</c>.</summary>
    [LibraryImport(NativeLibraries.LibC, EntryPoint = "malloc")]
    public static partial void* Malloc(nuint size);

    /// <summary><c>void* calloc(size_t count, size_t size)</c>: zeroed.</summary>
    [LibraryImport(NativeLibraries.LibC, EntryPoint = "calloc")]
    public static partial void* Calloc(nuint count, nuint size);

    /// <summary><c>void* realloc(void* p, size_t size)</c>: null on failure, <paramref name="p"/> then untouched.</summary>
    [LibraryImport(NativeLibraries.LibC, EntryPoint = "realloc")]
    public static partial void* Realloc(void* p, nuint size);

    /// <summary><c>void free(void* p)</c>.</summary>
    [LibraryImport(NativeLibraries.LibC, EntryPoint = "free")]
    public static partial void Free(void* p);
}
