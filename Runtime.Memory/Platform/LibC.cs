using System.Reflection;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Platform;

/// <summary>
/// The C runtime's allocator, called directly so that a failure is a null return rather than the
/// <see cref="OutOfMemoryException"/> that <see cref="NativeMemory.Alloc(nuint)"/> throws.
/// Every OS-specific line of the system allocator is in this file.
/// </summary>
/// <remarks>
/// The logical library name <c>libc</c> is mapped by <see cref="Resolve"/>: glibc's <c>libc.so.6</c> on Linux,
/// <c>libSystem.B.dylib</c> on macOS and the universal CRT (<c>ucrtbase.dll</c>) on Windows.
/// All four functions are thread-safe on every platform and never call back into managed code.
/// </remarks>
internal static unsafe partial class LibC
{
    private const string Library = "libc";

    static LibC() => NativeLibrary.SetDllImportResolver(typeof(LibC).Assembly, Resolve);

    [LibraryImport(Library, EntryPoint = "malloc")]
    internal static partial void* Malloc(nuint size);

    [LibraryImport(Library, EntryPoint = "calloc")]
    internal static partial void* Calloc(nuint count, nuint size);

    [LibraryImport(Library, EntryPoint = "realloc")]
    internal static partial void* Realloc(void* ptr, nuint size);

    [LibraryImport(Library, EntryPoint = "free")]
    internal static partial void Free(void* ptr);

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != Library)
        {
            return 0; // not ours: default probing
        }

        string platformName =
            OperatingSystem.IsWindows() ? "ucrtbase.dll" :
            OperatingSystem.IsMacOS() ? "/usr/lib/libSystem.B.dylib" :
            "libc.so.6";
        return NativeLibrary.TryLoad(platformName, out nint handle) ? handle : 0;
    }
}
