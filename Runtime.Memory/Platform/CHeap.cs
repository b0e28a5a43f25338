using System.Runtime.InteropServices;

namespace Runtime.Memory.Platform;

/// <summary>
/// The C library's heap functions, imported directly (the logical name <c>libc</c>, see <see cref="NativeLibraries"/>):
/// they return null on failure, so nothing on these paths throws. <see cref="SystemAllocator"/> is their one caller and
/// chooses between the two imports of each function; the rule and its reasons are in its remarks.
/// </summary>
/// <remarks>
/// <para>Each function is imported twice: plainly (a P/Invoke with the GC transition: the thread is in preemptive
/// mode while the C code runs, so a garbage collection can proceed without it), and as <c>*Short</c>, with
/// <see cref="SuppressGCTransitionAttribute"/> (the thread stays in cooperative mode: a collection that starts
/// meanwhile waits for the call to return). The short imports are only for calls that are short and do not wait.</para>
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

    /// <summary><see cref="Malloc"/> without the GC transition: for short calls only.</summary>
    [LibraryImport(NativeLibraries.LibC, EntryPoint = "malloc")]
    [SuppressGCTransition]
    public static partial void* MallocShort(nuint size);

    /// <summary><see cref="Calloc"/> without the GC transition: for short calls only.</summary>
    [LibraryImport(NativeLibraries.LibC, EntryPoint = "calloc")]
    [SuppressGCTransition]
    public static partial void* CallocShort(nuint count, nuint size);

    /// <summary><see cref="Realloc"/> without the GC transition: for short calls only.</summary>
    [LibraryImport(NativeLibraries.LibC, EntryPoint = "realloc")]
    [SuppressGCTransition]
    public static partial void* ReallocShort(void* p, nuint size);

    /// <summary><see cref="Free"/> without the GC transition: for short calls only.</summary>
    [LibraryImport(NativeLibraries.LibC, EntryPoint = "free")]
    [SuppressGCTransition]
    public static partial void FreeShort(void* p);
}
