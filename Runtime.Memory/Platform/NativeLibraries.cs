using System.Reflection;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Platform;

/// <summary>
/// The one DLL-import resolver of this assembly (.NET allows one per assembly). It maps the logical name
/// <c>libc</c> to the C library of the platform: glibc's <c>libc.so.6</c> on Linux (musl's <c>libc.so</c> where glibc
/// is absent) and <c>libSystem.B.dylib</c> on macOS. Windows imports name <c>kernel32</c> directly.
/// Other names get the default probing.
/// </summary>
internal static class NativeLibraries
{
    /// <summary>The logical library name of the C runtime in <c>[LibraryImport]</c>.</summary>
    public const string LibC = "libc";

    private static int s_registered;

    /// <summary>Registers the resolver once; every class with imports calls this from its static constructor.</summary>
    public static void EnsureResolver()
    {
        if (Interlocked.Exchange(ref s_registered, 1) == 0)
        {
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
        }
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        if (name != LibC)
        {
            return 0;
        }

        string[] candidates = OperatingSystem.IsMacOS() ? ["/usr/lib/libSystem.B.dylib"] : ["libc.so.6", "libc.so"];
        foreach (string candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, out nint handle))
            {
                return handle;
            }
        }

        return 0;
    }
}
