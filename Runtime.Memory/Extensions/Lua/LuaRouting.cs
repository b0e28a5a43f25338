using System.Runtime.InteropServices;

namespace Runtime.Memory.Extensions;

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
    /// <summary>A route into <paramref name="domain"/> of <paramref name="runtime"/>, accounted under <paramref name="tag"/>.</summary>
    public LuaRouting(RuntimeMemory runtime, MemoryDomainKind domain = MemoryDomainKind.Obj, string tag = "lua")
        : base(runtime, domain, tag)
    {
    }

    /// <summary>The <c>lua_Alloc</c> function of this route.</summary>
    public static delegate* unmanaged<void*, void*, nuint, nuint, void*> AllocFunction => &LuaAlloc;

    /// <summary>The <c>ud</c> pointer to pass with <see cref="AllocFunction"/>.</summary>
    public void* UserData => Handle;

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

    /// <summary><c>lua_close</c>: frees everything the state holds (through this route).</summary>
    public static void Close(nint state)
    {
        if (state != 0)
        {
            lua_close(state);
        }
    }

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
            LuaRouting route = FromHandle<LuaRouting>(ud);
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
