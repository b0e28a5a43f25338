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

    /// <summary>The logical library name of zlib: the system's <c>libz.so.1</c> (<c>libz.dylib</c>, <c>zlib1.dll</c>).</summary>
    public const string Zlib = "z";

    private static int s_registered;

    /// <summary>Registers the resolver once; every class with imports calls this from its static constructor.</summary>
    public static void EnsureResolver()
    {
        if (Interlocked.Exchange(ref s_registered, 1) == 0)
        {
            NativeLibrary.SetDllImportResolver(typeof(NativeLibraries).Assembly, Resolve);
        }
    }

    /// <summary>The logical library name of Lua 5.4: <c>liblua54</c>, which the KeraLua package ships per platform.</summary>
    public const string Lua = "lua54";

    /// <summary>The logical library name of SQLite: the system's <c>libsqlite3.so.0</c>.</summary>
    public const string Sqlite = "sqlite3";

    /// <summary>The files tried for a logical name, in order.</summary>
    public static string[] CandidatesOf(string name) => name switch
    {
        LibC => OperatingSystem.IsMacOS() ? ["/usr/lib/libSystem.B.dylib"] : ["libc.so.6", "libc.so"],
        Sqlite => OperatingSystem.IsWindows() ? ["sqlite3.dll", "winsqlite3.dll"] : OperatingSystem.IsMacOS() ? ["libsqlite3.dylib"] : ["libsqlite3.so.0", "libsqlite3.so"],
        Zlib => OperatingSystem.IsWindows() ? ["zlib1.dll"] : OperatingSystem.IsMacOS() ? ["libz.1.dylib", "libz.dylib"] : ["libz.so.1", "libz.so"],
        _ => [],
    };

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        string[] candidates = CandidatesOf(name);
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
