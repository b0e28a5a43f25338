using System.Runtime.InteropServices;

namespace Runtime.Memory.Extensions.Lua;

/// <summary>
/// Routes a Lua 5.4 state's allocations into a domain (by default <c>obj</c>) and accounts them under a tag (by default
/// <c>lua</c>): the state's <c>lua_Alloc</c>. Create the state with <see cref="NewState"/> (or pass
/// <see cref="AllocFunction"/> and <see cref="UserData"/> to <c>lua_newstate</c> yourself), and close it with
/// <c>lua_close</c> before disposing the route.
/// </summary>
/// <remarks>
/// <para>Lua calls <c>l_alloc(ud, ptr, osize, nsize)</c> with the exact size of every block it frees or resizes, so no
/// prefix is needed: blocks are the domain's own, and the tag is accounted from <c>osize</c> and <c>nsize</c>.
/// <c>nsize == 0</c> frees and returns NULL; otherwise the call is a realloc (a malloc when <c>ptr</c> is NULL) that
/// returns NULL only when it cannot be done, leaving the old block intact, as the Lua manual requires. Lua then runs an
/// emergency collection and retries once before raising "not enough memory".</para>
/// <para>The callback never raises a Lua error and never throws, so no <c>longjmp</c> ever crosses a managed frame. A
/// state is used by one thread at a time (Lua's rule); different states may run on different threads.</para>
/// </remarks>
public sealed unsafe partial class LuaRouting : LibraryRoute
{
    /// <summary>The route's block that Lua passes back as <c>ud</c>: <c>rtmem_lua_route</c> of native/lua_route.c, field
    /// for field up to <see cref="Bind"/> (the C side owns what follows: its lock and its list of caches).</summary>
    [StructLayout(LayoutKind.Sequential)]
    private struct NativeRoute
    {
        public nint Handle;
        public int Fast;
        public int Pad;
        public ulong Id;
        public Accounting.PeakTracker* TagTracker;
        public Accounting.PeakTracker* DomainTracker;
        public int TagAccount;
        public int DomainAccount;
        public nuint PoolMask;
        public int BlockSizeOffset;
        public int Pad2;
        public nint HeapMalloc;
        public nint HeapRealloc;
        public nint HeapFree;
        public nuint HeapMagic;
        public delegate* unmanaged<void*, void*, nuint, nuint, void*> Slow;
        public delegate* unmanaged<void*, int, int, void**, int> Refill;
        public delegate* unmanaged<void*, void**, int, void> Drain;
        public delegate* unmanaged<void*, Accounting.DomainCounters*> Bind;
    }

    private static long s_ids;

    /// <summary>Whether libruntime_mem.so (with the native fast path) could be loaded: otherwise every call is managed.</summary>
    private static readonly bool s_native = LoadNative();

    private readonly NativeRoute* _route;

    /// <summary>A route into <paramref name="domain"/> of <paramref name="runtime"/>, accounted under <paramref name="tag"/>.</summary>
    public LuaRouting(IRuntimeMemory runtime, MemoryDomainKind domain = MemoryDomainKind.Obj, string tag = "lua")
        : base(RuntimeMemory.Of(runtime), domain, tag)
    {
        nuint size = s_native ? Math.Max(rtmem_lua_route_size(), (nuint)sizeof(NativeRoute)) : (nuint)sizeof(NativeRoute);
        _route = (NativeRoute*)NativeMemory.AlignedAlloc(size, 64);
        NativeMemory.Clear(_route, size);
        _route->Handle = (nint)Handle;
        _route->Id = (ulong)Interlocked.Increment(ref s_ids);
        _route->TagTracker = Account.Tracker;
        _route->DomainTracker = RuntimeMemory.Of(runtime).Accounting.TrackerOf((int)domain);
        _route->TagAccount = Account.Index;
        _route->DomainAccount = (int)domain;
        _route->PoolMask = ~(nuint)(SmallObjectAllocator.PoolSize - 1);
        _route->BlockSizeOffset = (int)Marshal.OffsetOf<Allocators.SmallObject.Pool>(nameof(Allocators.SmallObject.Pool.BlockSize));
        _route->Slow = &LuaAlloc;
        _route->Refill = &RefillCache;
        _route->Drain = &DrainCache;
        _route->Bind = &BindCache;
        if (s_native && rtmem_lua_route_init(_route) != 0)
        {
            NativeMemory.AlignedFree(_route);
            throw new InvalidOperationException("The Lua route's native part could not initialise its lock.");
        }

        Domain.PipelineRebuilt += OnPipelineRebuilt;
        OnPipelineRebuilt(Domain.CurrentPipeline);
    }

    /// <summary>
    /// The <c>lua_Alloc</c> function of this route: the native fast path (<c>rtmem_lua_alloc</c> of libruntime_mem.so)
    /// where that library is present, which serves blocks of up to 512 bytes from a per-thread cache of the domain's
    /// blocks without entering .NET, else the managed one.
    /// </summary>
    public static delegate* unmanaged<void*, void*, nuint, nuint, void*> AllocFunction { get; } =
        s_native ? (delegate* unmanaged<void*, void*, nuint, nuint, void*>)NativeLibrary.GetExport(Platform.NativeLibraries.Load(Platform.NativeLibraries.RuntimeNative), "rtmem_lua_alloc") : &LuaAlloc;

    /// <summary>The <c>ud</c> pointer to pass with <see cref="AllocFunction"/>.</summary>
    public void* UserData => _route;

    /// <summary>Whether this route's calls currently take the native fast path with its per-thread cache
    /// (libruntime_mem.so is present and the domain runs the plain small-object allocator: no tracer, no debug or user hook).</summary>
    public bool UsesNativeCache => Volatile.Read(ref _route->Fast) == PoolPath;

    /// <summary>Whether this route's calls currently stay native, through the cache or straight to the C allocator under
    /// the domain (the system allocator or mimalloc alone on its chain).</summary>
    public bool StaysNative => Volatile.Read(ref _route->Fast) != ManagedPath;

    /// <summary>The small-object allocator the caches take blocks from and give them back to, uncounted (set while
    /// the cache may be used; blocks already cached go back to it even after the pipeline changed).</summary>
    private SmallObjectAllocator? _cacheSource;

    /// <summary>Which path native calls take (<c>RTMEM_LUA_*</c> of native/lua_route.c).</summary>
    private const int ManagedPath = 0, PoolPath = 1, HeaderPath = 2;

    private void OnPipelineRebuilt(Pipeline.DomainPipeline pipeline)
    {
        int path = ManagedPath;
        if (s_native && pipeline.NativeCacheSource is { } source)
        {
            _cacheSource = source;
            path = PoolPath;
        }
        else if (s_native && pipeline.NativeHeapAllocator?.NativeHeap is { } heap)
        {
            _route->HeapMalloc = heap.Malloc;
            _route->HeapRealloc = heap.Realloc;
            _route->HeapFree = heap.Free;
            _route->HeapMagic = heap.Magic;
            path = HeaderPath;
        }

        Volatile.Write(ref _route->Fast, path);
    }

    /// <summary>
    /// <c>lua_newstate</c> with this route's allocator: a new state, or null when the state could not be allocated.
    /// </summary>
    /// <exception cref="DllNotFoundException">Lua 5.4 (<c>liblua54</c>) is not available; the message says where it comes from.</exception>
    public nint NewState()
    {
        try
        {
            return lua_newstate(AllocFunction, UserData);
        }
        catch (DllNotFoundException ex)
        {
            var missing = new DllNotFoundException(
                "Lua 5.4 is not available: liblua54 could not be loaded. It ships with the KeraLua NuGet package (add <PackageReference Include=\"KeraLua\" Version=\"1.4.11\" />).", ex);
            Runtime.ReportBackendMissing("Lua", missing);
            throw missing;
        }
    }

    /// <summary>
    /// <c>lua_close</c>: frees everything the state holds (through its route), then gives the blocks the calling
    /// thread's cache of that route holds back to the domain, so that the domain's figures show what is left.
    /// </summary>
    public static void Close(nint state)
    {
        if (state == 0)
        {
            return;
        }

        void* ud;
        nint allocf = lua_getallocf(state, &ud);
        lua_close(state);
        if (s_native && allocf == (nint)AllocFunction && ud != null)
        {
            rtmem_lua_route_drain_mine(ud);
        }
    }

    /// <summary>
    /// Gives the blocks the calling thread's cache holds back to the domain (<see cref="LibraryRoute.Dispose"/> gives back every
    /// thread's). Blocks in a cache count as live in the domain, not in the tag: at most 64 per size class and thread.
    /// </summary>
    public void Drain()
    {
        if (s_native)
        {
            rtmem_lua_route_drain_mine(_route);
        }
    }

    /// <summary>Every thread's cache goes back to the domain, and the route's block is freed. No state may use the route any more.</summary>
    protected override void OnDispose()
    {
        Domain.PipelineRebuilt -= OnPipelineRebuilt;
        if (s_native)
        {
            rtmem_lua_route_destroy(_route);
        }

        NativeMemory.AlignedFree(_route);
    }

    private static bool LoadNative()
    {
        try
        {
            nint library = Platform.NativeLibraries.Load(Platform.NativeLibraries.RuntimeNative);
            if (!NativeLibrary.TryGetExport(library, "rtmem_lua_alloc", out _)
                || !NativeLibrary.TryGetExport(library, "rtmem_lua_route_layout", out nint layout))
            {
                return false; // a library built from older sources: the managed path
            }

            // The C structs must be these, field for field: a library built from other sources would corrupt memory.
            var ask = (delegate* unmanaged<int, long>)layout;
            long[] expected =
            [
                (long)Marshal.OffsetOf<NativeRoute>(nameof(NativeRoute.Fast)),
                (long)Marshal.OffsetOf<NativeRoute>(nameof(NativeRoute.TagTracker)),
                (long)Marshal.OffsetOf<NativeRoute>(nameof(NativeRoute.Slow)),
                (long)Marshal.OffsetOf<NativeRoute>(nameof(NativeRoute.Bind)),
                (long)Marshal.OffsetOf<NativeRoute>(nameof(NativeRoute.PoolMask)),
                (long)Marshal.OffsetOf<NativeRoute>(nameof(NativeRoute.HeapMagic)),
                sizeof(Accounting.DomainCounters),
                (long)Marshal.OffsetOf<Accounting.DomainCounters>(nameof(Accounting.DomainCounters.PendingLive)),
                (long)Marshal.OffsetOf<Accounting.PeakTracker>(nameof(Accounting.PeakTracker.Gate)),
                (long)Marshal.OffsetOf<Accounting.PeakTracker>(nameof(Accounting.PeakTracker.PublishAt)),
            ];
            for (int i = 0; i < expected.Length; i++)
            {
                if (ask(i) != expected[i])
                {
                    throw new InvalidOperationException(
                        $"libruntime_mem.so does not match this Runtime.Memory (the Lua route's layout differs at question {i}: {ask(i)} against {expected[i]}): rebuild them together.");
                }
            }

            return true;
        }
        catch (DllNotFoundException)
        {
            return false; // every call takes the managed path; nothing is lost but speed
        }
    }

    /// <summary>The route of a <c>ud</c> pointer (the GCHandle is its first field).</summary>
    private static LuaRouting RouteOf(void* ud) => FromHandle<LuaRouting>((void*)((NativeRoute*)ud)->Handle);

    /// <summary>Native cache refill: up to <paramref name="count"/> blocks of <paramref name="size"/> bytes (a class
    /// size) from the small-object allocator, uncounted (the native path counts each block as it hands it to Lua); how many.</summary>
    [UnmanagedCallersOnly]
    private static int RefillCache(void* ud, int size, int count, void** blocks)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        int got = 0;
        LuaRouting? route = null;
        try
        {
            route = RouteOf(ud);
            if (route._cacheSource is { } source)
            {
                while (got < count && (blocks[got] = source.Malloc((nuint)size)) != null)
                {
                    got++;
                }
            }
        }
        catch (Exception ex)
        {
            CacheFaulted(route, ex, MemoryOperation.Malloc);
        }

        return got;
    }

    /// <summary>Native cache drain: the blocks go back to the small-object allocator they came from, uncounted.</summary>
    [UnmanagedCallersOnly]
    private static void DrainCache(void* ud, void** blocks, int count)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        LuaRouting? route = null;
        try
        {
            route = RouteOf(ud);
            SmallObjectAllocator source = route._cacheSource!;
            for (int i = 0; i < count; i++)
            {
                source.Free(blocks[i]);
            }
        }
        catch (Exception ex)
        {
            CacheFaulted(route, ex, MemoryOperation.Free);
        }
    }

    /// <summary>
    /// A fault while the cache took blocks from, or gave them back to, the small-object allocator: the runtime's own
    /// code, so it goes to the domain's fault report (memory corruption: the process stops unless the debug hooks say
    /// otherwise), as a fault behind the domain's front door would. Never thrown into native code.
    /// </summary>
    private static void CacheFaulted(LuaRouting? route, Exception ex, MemoryOperation operation)
    {
        try
        {
            if (route?._cacheSource is { } source)
            {
                route.Domain.Faulted(source, ex, operation);
                return;
            }
        }
        catch (Exception reportFailed)
        {
            ex = reportFailed; // a violation the debug hooks throw must not cross into C either
        }

        Interop.NativeFaults.Swallow(ex);
    }

    /// <summary>A thread's first native call on the route: its accounts (its context's), null on failure.</summary>
    [UnmanagedCallersOnly]
    private static Accounting.DomainCounters* BindCache(void* ud)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            return (Accounting.DomainCounters*)&RouteOf(ud).Account.Context()->Accounts;
        }
        catch (Exception ex)
        {
            Interop.NativeFaults.Swallow(ex);
            return null;
        }
    }

    [LibraryImport(Platform.NativeLibraries.RuntimeNative)]
    private static partial nuint rtmem_lua_route_size();

    [LibraryImport(Platform.NativeLibraries.RuntimeNative)]
    private static partial int rtmem_lua_route_init(void* route);

    [LibraryImport(Platform.NativeLibraries.RuntimeNative)]
    private static partial void rtmem_lua_route_drain_mine(void* route);

    [LibraryImport(Platform.NativeLibraries.RuntimeNative)]
    private static partial void rtmem_lua_route_destroy(void* route);

    [LibraryImport(Platform.NativeLibraries.Lua)]
    private static partial nint lua_getallocf(nint state, void** ud);

    [ThreadStatic]
    private static bool t_resizing;

    /// <summary>
    /// True on the calling thread while a Lua state's block is being resized through a route (a <c>lua_Alloc</c> call
    /// with a block): a frame provider must not read the state's call stack then, since the block may be that stack,
    /// which Lua is moving (its frames hold offsets, not pointers, until the call returns). A provider that reads the
    /// stack (the host's) returns the last frames it read instead.
    /// </summary>
    public static bool IsResizing => t_resizing;

    [UnmanagedCallersOnly]
    private static void* LuaAlloc(void* ud, void* ptr, nuint osize, nuint nsize)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            LuaRouting route = RouteOf(ud);
            LibraryAccount account = route.Account;
            Threading.ThreadContext* context = account.Context();
            if (nsize == 0)
            {
                if (ptr != null)
                {
                    route.Domain.Free(ptr);
                    account.Freed(context, osize);
                }

                return null;
            }

            void* block;
            if (ptr == null) // osize is then an object kind, not a size
            {
                block = route.Domain.Malloc(nsize);
                if (block == null)
                {
                    account.OnFailed();
                    return null;
                }

                if (!account.Admit(context, nsize))
                {
                    route.Domain.Free(block); // the tag's budget: Lua collects garbage and retries, then raises "not enough memory"
                    return null;
                }

                return block;
            }

            if (!account.ReserveResize(osize, nsize, out long reserved))
            {
                return null; // growth over the tag's budget; a shrink is never refused (Lua relies on that)
            }

            t_resizing = true; // Lua may be moving the stack this block is (its pointers are offsets meanwhile)
            try
            {
                block = route.Domain.Realloc(ptr, nsize);
            }
            finally
            {
                t_resizing = false;
            }

            if (block == null)
            {
                account.ResizeFailed(reserved);
                return null;
            }

            account.Resized(context, osize, nsize, reserved);
            return block;
        }
        catch (Exception ex)
        {
            return Interop.NativeFaults.Swallow(ex);
        }
    }

    static LuaRouting() => Platform.NativeLibraries.EnsureResolver();

    [LibraryImport(Platform.NativeLibraries.Lua)]
    private static partial nint lua_newstate(delegate* unmanaged<void*, void*, nuint, nuint, void*> f, void* ud);

    [LibraryImport(Platform.NativeLibraries.Lua)]
    private static partial void lua_close(nint state);
}
