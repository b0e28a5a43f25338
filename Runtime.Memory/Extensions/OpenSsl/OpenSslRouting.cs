using System.Runtime.InteropServices;
using Runtime.Memory.Platform;

namespace Runtime.Memory.Extensions.OpenSsl;

/// <summary>
/// Routes every allocation OpenSSL's libcrypto (the system's <c>libcrypto.so.3</c>) makes into a domain of one runtime
/// (by default <c>raw</c>) and accounts them under a tag (by default <c>openssl</c>), through
/// <c>CRYPTO_set_mem_functions</c>. That includes what .NET's own <c>System.Security.Cryptography</c> and TLS make
/// libcrypto allocate, since .NET on Linux runs on the same libcrypto.
/// </summary>
/// <remarks>
/// <para><b>Install first.</b> OpenSSL accepts an allocator only before its first allocation through its default one;
/// after that <c>CRYPTO_set_mem_functions</c> refuses and <see cref="Install"/> says so, naming the cause (something
/// in the process already used cryptography or TLS). Call it at the start of <c>Main</c>, before anything else touches
/// OpenSSL. Installing over an allocator that another component set is refused too, since its blocks would then be
/// freed by ours.</para>
/// <para><b>For the life of the process.</b> OpenSSL has one allocator per process and holds blocks until it is
/// cleaned up at exit, so the route cannot be taken out again: it binds OpenSSL to one runtime, and a second
/// <see cref="Install"/> (into any runtime) says which route holds it. Disposing the route, or its runtime, or the
/// process exiting closes it: OpenSSL's later allocations come from the C library, and the runtime blocks it still
/// holds are left where they are (they stay valid) until the process exits.</para>
/// <para><b>Frees are deferred.</b> OpenSSL frees from thread-exit destructors and from <c>atexit</c>, where managed
/// code must not run (dotnet/runtime#110442: a managed free callback there crashes the process). So OpenSSL's free
/// function is C (<c>native/openssl_route.c</c>, built into <c>libruntime_mem.so</c>): it pushes the block onto a
/// lock-free list, and the route takes the blocks back into the domain before each of OpenSSL's allocations and on
/// <see cref="Flush"/>. <see cref="LibraryRoute.Account"/> therefore counts a freed block as live until it is taken
/// back: call <see cref="Flush"/> before reading exact figures (<see cref="PendingFrees"/> tells how many are
/// waiting). OpenSSL's malloc and realloc call managed code only while the route is bound, on the live threads that
/// allocate; none of them throws, and a failure is a null return, which OpenSSL reports as its own malloc failure.</para>
/// </remarks>
public sealed unsafe partial class OpenSslRouting : LibraryRoute
{
    private static readonly Lock s_lock = new();
    private static OpenSslRouting? s_installed;
    private static string? s_closedRoute;

    private readonly SharedState* _shared;
    private readonly nint _crypto;
    private readonly nint _shim;
    private readonly Lock _drainLock = new(); // one drainer at a time; none after the close's final drain
    private bool _drained;
    private long _takenBack;
    private int _closed;

    private OpenSslRouting(RuntimeMemory runtime, MemoryDomainKind domain, string tag, SharedState* shared, nint shim, nint crypto, string version)
        : base(runtime, domain, tag)
    {
        _shared = shared;
        _shim = shim;
        _crypto = crypto;
        LibraryVersion = version;
    }

    /// <summary>The .NET switches that make System.Security.Cryptography install its own OpenSSL allocator at first use.</summary>
    private static readonly string[] DotnetMemoryDebugVariables = ["DOTNET_OPENSSL_MEMORY_DEBUG", "DOTNET_SYSTEM_NET_SECURITY_OPENSSL_MEMORY_DEBUG"];

    /// <summary>The C side's shared state (<c>rtmem_openssl_state</c> in native/openssl_route.c), field for field.</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct SharedState
    {
        public nint Deferred;        // head of the list of freed blocks (their prefix addresses)
        public ulong DeferredFrees;  // blocks pushed onto it, ever
        public ulong LibcBlocks;     // allocations the C library served (route not bound)
        public ulong DroppedFrees;   // runtime blocks freed after the route closed
        public int State;
        public int Inflight;
        public delegate* unmanaged<nuint, byte*, int, void*> ManagedMalloc;
        public delegate* unmanaged<void*, nuint, byte*, int, void*> ManagedRealloc;
    }

    /// <summary>libcrypto's version text (<c>OpenSSL_version(OPENSSL_VERSION)</c>), e.g. <c>OpenSSL 3.0.19 27 Jan 2026</c>.</summary>
    public string LibraryVersion { get; }

    /// <summary>The route OpenSSL is bound to in this process, or null.</summary>
    public static OpenSslRouting? Current => Volatile.Read(ref s_installed);

    /// <summary>Blocks OpenSSL has freed that the route has not taken back into the domain yet (see <see cref="Flush"/>).</summary>
    public long PendingFrees => (long)Volatile.Read(ref _shared->DeferredFrees) - Interlocked.Read(ref _takenBack);

    /// <summary>Allocations OpenSSL got from the C library because the route was not bound (before it, or after it closed).</summary>
    public long CLibraryAllocations => (long)Volatile.Read(ref _shared->LibcBlocks);

    /// <summary>Runtime blocks OpenSSL freed after the route closed, left where they are until the process exits.</summary>
    public long DroppedFrees => (long)Volatile.Read(ref _shared->DroppedFrees);

    /// <summary>Whether the route is closed (disposed, its runtime disposed, or the process exiting).</summary>
    public bool IsClosed => Volatile.Read(ref _closed) != 0;

    /// <summary>
    /// Makes OpenSSL allocate in <paramref name="domain"/> of <paramref name="runtime"/> for the rest of the process.
    /// Call it before anything in the process uses OpenSSL.
    /// </summary>
    /// <exception cref="InvalidOperationException">OpenSSL has already allocated with its own allocator (a late install),
    /// another component has replaced its allocator, or a route was installed before in this process (the message says
    /// which).</exception>
    /// <exception cref="DllNotFoundException">libcrypto, or this library's C part (<c>libruntime_mem.so</c>), is missing;
    /// the message names the files tried and what to install.</exception>
    public static OpenSslRouting Install(IRuntimeMemory runtime, MemoryDomainKind domain = MemoryDomainKind.Raw, string tag = "openssl")
    {
        RuntimeMemory target = RuntimeMemory.Of(runtime);
        lock (s_lock)
        {
            if (s_installed is { } other)
            {
                throw new InvalidOperationException(
                    $"OpenSSL's allocator is already routed into the {other.Domain.Name} domain of a runtime (tag '{other.Account.Tag}'): OpenSSL has one allocator per process, for the life of the process.");
            }

            if (s_closedRoute is { } closed)
            {
                throw new InvalidOperationException(
                    $"OpenSSL's allocator was routed before in this process ({closed}) and that route is closed; OpenSSL still holds blocks from it, so it cannot be routed again until the process exits.");
            }

            foreach (string variable in DotnetMemoryDebugVariables)
            {
                if (Environment.GetEnvironmentVariable(variable) is "1" or "true")
                {
                    throw new InvalidOperationException(
                        $"{variable} is set, so .NET's System.Security.Cryptography will install its own OpenSSL allocator at its first use, replacing the route while OpenSSL holds the route's blocks. Unset it to route OpenSSL into the runtime.");
                }
            }

            SharedState* shared;
            nint shim, crypto;
            string version;
            try
            {
                shared = LoadShim(out shim);
                version = LoadCrypto(out crypto);
            }
            catch (DllNotFoundException ex)
            {
                target.ReportBackendMissing("OpenSSL", ex);
                throw;
            }

            // Everything that can fail on the managed side happens before OpenSSL is touched (the arguments included).
            var route = new OpenSslRouting(target, domain, tag, shared, shim, crypto, version);
            try
            {
                route.RefuseForeignAllocator();
            }
            catch
            {
                route.Abandon();
                throw;
            }

            // Until bind, the C functions serve OpenSSL from the C library (marked blocks), so installing them first
            // and binding after leaves no window in which a block could be mismatched.
            (nint malloc, nint realloc, nint free) = route.ShimFunctions;
            if (CRYPTO_set_mem_functions((void*)malloc, (void*)realloc, (void*)free) == 0)
            {
                route.Abandon();
                throw new InvalidOperationException(
                    $"CRYPTO_set_mem_functions refused the route: {version} has already allocated memory with its own allocator, and OpenSSL accepts an allocator only before its first allocation. " +
                    "Install OpenSslRouting at the start of the process, before anything uses cryptography or TLS (System.Security.Cryptography, HttpClient over https, SslStream).");
            }

            s_installed = route; // published before bind: the managed functions find it from OpenSSL's first call on
            if (rtmem_openssl_bind(&ManagedMalloc, &ManagedRealloc) != 0)
            {
                s_installed = null;
                route.Abandon();
                throw new InvalidOperationException("libruntime_mem.so's OpenSSL route was bound before in this process (another copy of Runtime.Memory, in another load context?).");
            }

            target.BindProcessGlobalRoute(route.Close);
            AppDomain.CurrentDomain.ProcessExit += (_, _) => route.Close(); // OPENSSL_cleanup runs after, from atexit
            return route;
        }
    }

    /// <summary>
    /// Takes every block OpenSSL has freed so far back into the domain, and returns how many there were. Safe from any
    /// thread, at any time; OpenSSL's allocations do the same on their own.
    /// </summary>
    /// <remarks>Once the route is closed this does nothing: the close took the last frees back while the runtime could
    /// still take them.</remarks>
    public int Flush()
    {
        lock (_drainLock)
        {
            return Drain();
        }
    }

    /// <summary>Whether OpenSSL's allocator functions are still the route's (another component may replace them).</summary>
    public bool IsInstalledInOpenSsl
    {
        get
        {
            void* malloc, realloc, free;
            CRYPTO_get_mem_functions(&malloc, &realloc, &free);
            return ((nint)malloc, (nint)realloc, (nint)free) == ShimFunctions;
        }
    }

    private (nint Malloc, nint Realloc, nint Free) ShimFunctions =>
        (NativeLibrary.GetExport(_shim, "rtmem_openssl_malloc"), NativeLibrary.GetExport(_shim, "rtmem_openssl_realloc"), NativeLibrary.GetExport(_shim, "rtmem_openssl_free"));

    /// <summary>Takes the list back; the caller holds <see cref="_drainLock"/>.</summary>
    private int Drain()
    {
        if (_drained)
        {
            return 0;
        }

        nint head = Interlocked.Exchange(ref _shared->Deferred, 0);
        int count = 0;
        while (head != 0)
        {
            byte* block = (byte*)head;
            head = *(nint*)(block + sizeof(nuint)); // the list link, in the prefix's check word
            ReleaseBlock(block);
            count++;
        }

        Interlocked.Add(ref _takenBack, count);
        return count;
    }

    /// <summary>Closes the route (see the remarks): OpenSSL allocates from the C library from now on.</summary>
    protected override void OnDispose() => Close();

    /// <summary>Releases a route that never reached OpenSSL (an install that failed part way).</summary>
    private void Abandon()
    {
        Volatile.Write(ref _closed, 1);
        Dispose();
    }

    private void Close()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        rtmem_openssl_close(); // returns once no other OpenSSL call is inside managed code or pushing a free
        lock (_drainLock)
        {
            Drain();
            _drained = true;
        }

        lock (s_lock)
        {
            if (ReferenceEquals(s_installed, this))
            {
                s_installed = null;
                s_closedRoute = $"the {Domain.Name} domain, tag '{Account.Tag}'";
            }
        }
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"{Account}; {PendingFrees:N0} frees pending, {CLibraryAllocations:N0} C library blocks, {DroppedFrees:N0} dropped frees";

    // ---- loading ---------------------------------------------------------------------------------------------------

    private static SharedState* LoadShim(out nint shim)
    {
        SharedState* shared;
        int prefix, size, stateOffset, mallocOffset;
        try
        {
            shim = NativeLibraries.Load(NativeLibraries.RuntimeNative);
            shared = rtmem_openssl_state_get();
            prefix = rtmem_openssl_layout(0);
            size = rtmem_openssl_layout(1);
            stateOffset = rtmem_openssl_layout(2);
            mallocOffset = rtmem_openssl_layout(3);
        }
        catch (DllNotFoundException ex)
        {
            throw new DllNotFoundException(
                $"The OpenSSL route needs libruntime_mem.so, the C part of Runtime.Memory (native/openssl_route.c), beside the application or in the package's runtimes/<rid>/native folder; it is built with the library when a C compiler is present. Install gcc and rebuild. ({ex.Message})", ex);
        }

        if (prefix != PrefixSize || size != sizeof(SharedState)
            || stateOffset != (int)Marshal.OffsetOf<SharedState>(nameof(SharedState.State))
            || mallocOffset != (int)Marshal.OffsetOf<SharedState>(nameof(SharedState.ManagedMalloc)))
        {
            throw new InvalidOperationException(
                $"libruntime_mem.so does not match this Runtime.Memory (prefix {prefix}, state {size} bytes, offsets {stateOffset}/{mallocOffset}): rebuild them together.");
        }

        return shared;
    }

    private static string LoadCrypto(out nint crypto)
    {
        try
        {
            crypto = NativeLibraries.Load(NativeLibraries.Crypto);
            ulong number = OpenSSL_version_num().Value;
            if (number < 0x1010_0000UL)
            {
                throw new InvalidOperationException(
                    $"OpenSSL {number:X} is older than 1.1.0, whose CRYPTO_set_mem_functions has another signature; the route needs OpenSSL 1.1 or 3.");
            }

            return Marshal.PtrToStringUTF8((nint)OpenSSL_version(0)) ?? $"OpenSSL {number:X}";
        }
        catch (DllNotFoundException ex)
        {
            throw new DllNotFoundException(
                $"OpenSSL is not available: none of {string.Join(", ", NativeLibraries.CandidatesOf(NativeLibraries.Crypto))} could be loaded. Install it (Debian: libssl3).", ex);
        }
    }

    /// <summary>
    /// Once any custom allocator is installed OpenSSL keeps accepting new ones (its lock-out applies to the default
    /// allocator only), so routing over another component's would free its blocks with ours: refuse, unless the
    /// functions are libcrypto's own or the route's (left by an install that failed after setting them).
    /// </summary>
    private void RefuseForeignAllocator()
    {
        void* malloc, realloc, free;
        CRYPTO_get_mem_functions(&malloc, &realloc, &free);
        (nint, nint, nint) current = ((nint)malloc, (nint)realloc, (nint)free);
        (nint, nint, nint) own = (NativeLibrary.GetExport(_crypto, "CRYPTO_malloc"), NativeLibrary.GetExport(_crypto, "CRYPTO_realloc"), NativeLibrary.GetExport(_crypto, "CRYPTO_free"));
        if (current != own && current != ShimFunctions)
        {
            throw new InvalidOperationException(
                $"OpenSSL's allocator has already been replaced by another component (malloc 0x{(nint)malloc:X}, realloc 0x{(nint)realloc:X}, free 0x{(nint)free:X}; libcrypto's own are CRYPTO_malloc, CRYPTO_realloc and CRYPTO_free): routing over it would free that component's blocks with the route's.");
        }
    }

    // ---- the managed half of OpenSSL's malloc and realloc (called from the C side while bound; none throws) --------

    [UnmanagedCallersOnly]
    private static void* ManagedMalloc(nuint size, byte* file, int line)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            if (Current is not { } route)
            {
                return null;
            }

            route.TakeBackPending();
            return route.Allocate(size); // CRYPTO_malloc passes 0 through: a unique block, as the domains give
        }
        catch (Exception ex)
        {
            return Interop.NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void* ManagedRealloc(void* ptr, nuint size, byte* file, int line)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            if (Current is not { } route)
            {
                return null;
            }

            route.TakeBackPending();
            return route.Reallocate(ptr, size); // the C side has handled null and 0
        }
        catch (Exception ex)
        {
            return Interop.NativeFaults.Swallow(ex);
        }
    }

    /// <summary>
    /// One load when nothing is pending: the cost OpenSSL's allocations pay for the deferred frees. A thread that finds
    /// another draining goes on (the list is taken back whole, by one thread at a time).
    /// </summary>
    private void TakeBackPending()
    {
        if (Volatile.Read(ref _shared->Deferred) != 0 && _drainLock.TryEnter())
        {
            try
            {
                Drain();
            }
            finally
            {
                _drainLock.Exit();
            }
        }
    }

    static OpenSslRouting() => NativeLibraries.EnsureResolver();

    // ---- imports ---------------------------------------------------------------------------------------------------

    [LibraryImport(NativeLibraries.RuntimeNative)]
    private static partial SharedState* rtmem_openssl_state_get();

    [LibraryImport(NativeLibraries.RuntimeNative)]
    private static partial int rtmem_openssl_layout(int which);

    [LibraryImport(NativeLibraries.RuntimeNative)]
    private static partial int rtmem_openssl_bind(delegate* unmanaged<nuint, byte*, int, void*> malloc, delegate* unmanaged<void*, nuint, byte*, int, void*> realloc);

    [LibraryImport(NativeLibraries.RuntimeNative)]
    private static partial void rtmem_openssl_close();

    [LibraryImport(NativeLibraries.Crypto)]
    private static partial int CRYPTO_set_mem_functions(void* malloc, void* realloc, void* free);

    [LibraryImport(NativeLibraries.Crypto)]
    private static partial void CRYPTO_get_mem_functions(void** malloc, void** realloc, void** free);

    [LibraryImport(NativeLibraries.Crypto)]
    private static partial CULong OpenSSL_version_num();

    [LibraryImport(NativeLibraries.Crypto)]
    private static partial byte* OpenSSL_version(int type);
}
