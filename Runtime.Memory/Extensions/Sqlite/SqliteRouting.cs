using System.Runtime.InteropServices;

namespace Runtime.Memory.Extensions.Sqlite;

/// <summary>
/// Routes every allocation SQLite (the system's <c>libsqlite3.so.0</c>) makes into a domain of one runtime (by default
/// <c>raw</c>) and accounts them under a tag (by default <c>sqlite</c>), through <c>SQLITE_CONFIG_MALLOC</c>.
/// </summary>
/// <remarks>
/// <para><b>Process-wide.</b> SQLite has one allocator per process and its callbacks carry no context pointer, so one
/// route at a time can be installed; installing a second says which runtime holds the first. SQLite accepts a new
/// allocator only while it is not initialised: <see cref="Install"/> shuts SQLite down first, and refuses (saying
/// how many bytes SQLite holds) while a connection or statement is open, since that memory could then be freed by
/// the wrong allocator; and <see cref="LibraryRoute.Dispose"/> puts the previous allocator back the same
/// way. Disposing the route puts SQLite's previous allocator back.</para>
/// <para><b>The methods.</b> <c>xMalloc</c>, <c>xRealloc</c> and <c>xFree</c> go to the domain through the route's
/// 16-byte size prefix, so <c>xSize</c> (called on every free to keep <c>sqlite3_memory_used</c>) is O(1);
/// <c>xRoundup</c> rounds to 8, SQLite's own granule. None of them throws or raises; a failure is a null return,
/// which SQLite reports as <c>SQLITE_NOMEM</c>.</para>
/// <para><b>The variadic call.</b> <c>sqlite3_config(int, ...)</c> is variadic and .NET has no native varargs: on x64
/// and Linux arm64 a fixed-arity call passes the pointer where the callee reads it; on Apple arm64 variadic arguments
/// go on the stack, so the pointer is passed after eight register slots.</para>
/// </remarks>
public sealed unsafe partial class SqliteRouting : LibraryRoute
{
    private const int ConfigMalloc = 4;     // SQLITE_CONFIG_MALLOC
    private const int ConfigGetMalloc = 5;  // SQLITE_CONFIG_GETMALLOC

    private static readonly Lock s_lock = new();
    private static SqliteRouting? s_installed;

    private MemMethods _previous;
    private bool _installed;

    private SqliteRouting(RuntimeMemory runtime, MemoryDomainKind domain, string tag)
        : base(runtime, domain, tag)
    {
    }

    /// <summary>SQLite's <c>sqlite3_mem_methods</c>, field for field.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct MemMethods
    {
        public delegate* unmanaged<int, void*> XMalloc;
        public delegate* unmanaged<void*, void> XFree;
        public delegate* unmanaged<void*, int, void*> XRealloc;
        public delegate* unmanaged<void*, int> XSize;
        public delegate* unmanaged<int, int> XRoundup;
        public delegate* unmanaged<void*, int> XInit;
        public delegate* unmanaged<void*, void> XShutdown;
        public void* AppData;
    }

    /// <summary>
    /// Makes SQLite allocate in <paramref name="domain"/> of <paramref name="runtime"/> until the route is disposed.
    /// </summary>
    /// <exception cref="InvalidOperationException">Another route is installed (the message names its runtime), or SQLite
    /// could not be shut down or configured (a connection is open; the SQLite result code is in the message).</exception>
    /// <exception cref="DllNotFoundException">SQLite is not installed; the message names the files tried.</exception>
    public static SqliteRouting Install(IRuntimeMemory runtime, MemoryDomainKind domain = MemoryDomainKind.Raw, string tag = "sqlite")
    {
        RuntimeMemory target = RuntimeMemory.Of(runtime);
        lock (s_lock)
        {
            if (s_installed is { } other)
            {
                throw new InvalidOperationException(
                    $"SQLite's allocator is already routed into the {other.Domain.Name} domain of another runtime (tag '{other.Account.Tag}'): SQLite has one allocator per process. Dispose that route first.");
            }

            var route = new SqliteRouting(target, domain, tag);
            s_installed = route; // the methods find their route here, from SQLite's first call on
            try
            {
                route.Bind();
            }
            catch (Exception ex)
            {
                if (ex is DllNotFoundException missing)
                {
                    target.ReportBackendMissing("SQLite", missing);
                }

                route.Dispose();
                throw;
            }

            return route;
        }
    }

    private void Bind()
    {
        RefuseWhileSqliteHoldsMemory("route SQLite's allocator");
        Check(Shutdown(), "sqlite3_shutdown");
        MemMethods previous;
        Check(Config(ConfigGetMalloc, &previous), "sqlite3_config(SQLITE_CONFIG_GETMALLOC)");
        var methods = new MemMethods
        {
            XMalloc = &XMalloc,
            XFree = &XFree,
            XRealloc = &XRealloc,
            XSize = &XSize,
            XRoundup = &XRoundup,
            XInit = &XInit,
            XShutdown = &XShutdown,
            AppData = null,
        };
        Check(Config(ConfigMalloc, &methods), "sqlite3_config(SQLITE_CONFIG_MALLOC)"); // SQLite copies the struct
        _previous = previous;
        _installed = true;
        Check(sqlite3_initialize(), "sqlite3_initialize");
    }

    /// <summary>
    /// Puts SQLite's previous allocator back (shutting SQLite down first) when the route is disposed. Every connection
    /// must be closed first; a failure to shut down leaves the route installed and is reported.
    /// </summary>
    protected override void OnDispose()
    {
        lock (s_lock)
        {
            if (_installed)
            {
                RefuseWhileSqliteHoldsMemory("put SQLite's previous allocator back");
                Check(Shutdown(), "sqlite3_shutdown");
                MemMethods previous = _previous;
                Check(Config(ConfigMalloc, &previous), "sqlite3_config(SQLITE_CONFIG_MALLOC) restoring the previous allocator");
                _installed = false;
            }

            if (ReferenceEquals(s_installed, this))
            {
                s_installed = null;
            }
        }
    }

    /// <summary>
    /// SQLite's shutdown does not refuse while connections are open, but their memory would then be freed by the wrong
    /// allocator; SQLite's own count of the memory it holds (<c>sqlite3_memory_used</c>) tells.
    /// </summary>
    private static void RefuseWhileSqliteHoldsMemory(string action)
    {
        long held;
        try
        {
            held = sqlite3_memory_used();
        }
        catch (DllNotFoundException)
        {
            Shutdown(); // reports the missing library with the files tried
            throw;
        }

        if (held != 0)
        {
            throw new InvalidOperationException(
                $"Cannot {action}: SQLite holds {held} bytes (an open connection, statement or cache), which only the allocator that gave them can free. Close every connection first.");
        }
    }

    private static void Check(int rc, string call)
    {
        if (rc != 0)
        {
            throw new InvalidOperationException($"{call} returned {rc} ({Marshal.PtrToStringUTF8((nint)sqlite3_errstr(rc))}).");
        }
    }

    private static int Shutdown()
    {
        try
        {
            return sqlite3_shutdown();
        }
        catch (DllNotFoundException ex)
        {
            throw new DllNotFoundException(
                $"SQLite is not available: none of {string.Join(", ", Platform.NativeLibraries.CandidatesOf(Platform.NativeLibraries.Sqlite))} could be loaded. Install it (Debian: libsqlite3-0).", ex);
        }
    }

    /// <summary>The variadic <c>sqlite3_config(op, pointer)</c>, called the way the platform's ABI reads it.</summary>
    private static int Config(int op, void* arg) =>
        OperatingSystem.IsMacOS() && RuntimeInformation.ProcessArchitecture == Architecture.Arm64
            ? sqlite3_config_apple_arm64(op, 0, 0, 0, 0, 0, 0, 0, arg)
            : sqlite3_config(op, arg);

    // ---- the methods (SQLite calls them; none throws) -------------------------------------------------------------

    private static SqliteRouting? Current => Volatile.Read(ref s_installed);

    [UnmanagedCallersOnly]
    private static void* XMalloc(int size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            return size <= 0 || Current is not { } route ? null : route.Allocate((nuint)size);
        }
        catch (Exception ex)
        {
            return Interop.NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void XFree(void* ptr)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            Current?.Release(ptr);
        }
        catch (Exception ex)
        {
            Interop.NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void* XRealloc(void* ptr, int size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            return size <= 0 || Current is not { } route ? null : route.Reallocate(ptr, (nuint)size);
        }
        catch (Exception ex)
        {
            return Interop.NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static int XSize(void* ptr) => (int)SizeOf(ptr);

    [UnmanagedCallersOnly]
    private static int XRoundup(int size) => size > int.MaxValue - 7 ? 0 : (size + 7) & ~7;

    [UnmanagedCallersOnly]
    private static int XInit(void* appData) => 0;

    [UnmanagedCallersOnly]
    private static void XShutdown(void* appData)
    {
    }

    static SqliteRouting() => Platform.NativeLibraries.EnsureResolver();

    [LibraryImport(Platform.NativeLibraries.Sqlite)]
    private static partial int sqlite3_initialize();

    [LibraryImport(Platform.NativeLibraries.Sqlite)]
    private static partial int sqlite3_shutdown();

    [LibraryImport(Platform.NativeLibraries.Sqlite)]
    private static partial long sqlite3_memory_used();

    [LibraryImport(Platform.NativeLibraries.Sqlite)]
    private static partial byte* sqlite3_errstr(int rc);

    [LibraryImport(Platform.NativeLibraries.Sqlite)]
    private static partial int sqlite3_config(int op, void* arg);

    [LibraryImport(Platform.NativeLibraries.Sqlite, EntryPoint = "sqlite3_config")]
    private static partial int sqlite3_config_apple_arm64(int op, nint r1, nint r2, nint r3, nint r4, nint r5, nint r6, nint r7, void* arg);
}
