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

    /// <summary>The logical library name of OpenSSL's libcrypto (3.x, or 1.1 with the same allocator functions).</summary>
    public const string Crypto = "crypto";

    /// <summary>The logical library name of mimalloc, the backend of the <c>mimalloc</c> allocator names: <c>libmimalloc.so.2</c>.</summary>
    public const string Mimalloc = "mimalloc";

    /// <summary>
    /// The logical library name of this library's own C part, <c>libruntime_mem.so</c> (native/openssl_route.c), built
    /// with the library when a C compiler is present and found beside the application or in the package's
    /// <c>runtimes/&lt;rid&gt;/native</c> folder.
    /// </summary>
    public const string RuntimeNative = "runtime_mem";

    /// <summary>
    /// The handle of a logical library, loaded as the imports load it (through the resolver); for function addresses
    /// (<see cref="NativeLibrary.GetExport"/>) that native code is handed.
    /// </summary>
    /// <exception cref="DllNotFoundException">None of <see cref="CandidatesOf"/> could be loaded.</exception>
    public static nint Load(string name)
    {
        EnsureResolver();
        return NativeLibrary.Load(name, typeof(NativeLibraries).Assembly, null);
    }

    /// <summary>The files tried for a logical name, in order.</summary>
    public static string[] CandidatesOf(string name) => name switch
    {
        LibC => OperatingSystem.IsMacOS() ? ["/usr/lib/libSystem.B.dylib"] : ["libc.so.6", "libc.so"],
        Sqlite => OperatingSystem.IsWindows() ? ["sqlite3.dll", "winsqlite3.dll"] : OperatingSystem.IsMacOS() ? ["libsqlite3.dylib"] : ["libsqlite3.so.0", "libsqlite3.so"],
        Zlib => OperatingSystem.IsWindows() ? ["zlib1.dll"] : OperatingSystem.IsMacOS() ? ["libz.1.dylib", "libz.dylib"] : ["libz.so.1", "libz.so"],
        Crypto => OperatingSystem.IsWindows() ? ["libcrypto-3-x64.dll", "libcrypto-3.dll"] : OperatingSystem.IsMacOS() ? ["libcrypto.3.dylib"] : ["libcrypto.so.3", "libcrypto.so.1.1"],
        Mimalloc => OperatingSystem.IsWindows() ? ["mimalloc.dll"] : OperatingSystem.IsMacOS() ? ["libmimalloc.2.dylib", "libmimalloc.dylib"] : ["libmimalloc.so.2", "libmimalloc.so"],
        RuntimeNative => OperatingSystem.IsWindows() ? ["runtime_mem.dll"] : OperatingSystem.IsMacOS() ? ["libruntime_mem.dylib"] : ["libruntime_mem.so"],
        _ => [],
    };

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? searchPath)
    {
        string[] candidates = CandidatesOf(name);
        foreach (string candidate in candidates)
        {
            // Our own library is found beside the application or through the package's deps.json entry; system
            // libraries by the loader's usual search.
            bool found = name == RuntimeNative
                ? NativeLibrary.TryLoad(candidate, assembly, DllImportSearchPath.AssemblyDirectory | DllImportSearchPath.ApplicationDirectory, out nint handle)
                : NativeLibrary.TryLoad(candidate, out handle);
            if (found)
            {
                return handle;
            }
        }

        return 0;
    }
}
