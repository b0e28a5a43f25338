using System.Runtime.InteropServices;
using Runtime.Memory;
using Runtime.Memory.Extensions;
using Runtime.Memory.Tracing;
using Runtime.Memory.Extensions.Lua;
using Runtime.Memory.Extensions.Zlib;

namespace Runtime.Host.Lua;

/// <summary>
/// What the host's module functions read for the Lua state they run in: the memory service, the state's route, the
/// zlib module's route and the snapshots a script took.
/// </summary>
/// <remarks>
/// <para>The modules' functions are light C functions (no upvalues, so pushing them does not allocate), which is why
/// they find their context through the state itself: <see cref="Attach"/> keeps a <see cref="GCHandle"/> to it in the
/// state's extra space (<c>lua_getextraspace</c>: <c>LUA_EXTRASPACE</c>, one pointer, just below the
/// <c>lua_State</c>), which <c>lua_newthread</c> copies into every coroutine. So states running at once on different
/// threads (tests, an embedding host with several interpreters) never see each other's figures.</para>
/// <para>Layout: <c>*(nint*)(L - sizeof(nint))</c> is the handle; it is written once, before the state runs any Lua
/// code, and freed after <c>lua_close</c>. Reading it is the one unsafe step (<see cref="Of"/>).</para>
/// </remarks>
internal sealed class LuaStateContext(IRuntimeMemory runtime, LuaRouting route, ZlibRouting? zlib)
{
    public IRuntimeMemory Runtime { get; } = runtime;

    public LuaRouting Route { get; } = route;

    /// <summary>The zlib module's route (raw domain, tag <c>zlib</c>); null when libz.so.1 is not there.</summary>
    public ZlibRouting? Zlib { get; } = zlib;

    /// <summary>The snapshots <c>memory.snapshot()</c> took, numbered from 1.</summary>
    public List<TraceSnapshot> Snapshots { get; } = [];

    /// <summary>Puts <paramref name="context"/> in <paramref name="state"/>'s extra space; dispose the result after <c>lua_close</c>.</summary>
    public static unsafe Attachment Attach(nint state, LuaStateContext context)
    {
        var handle = GCHandle.Alloc(context);
        *(nint*)(state - sizeof(nint)) = GCHandle.ToIntPtr(handle);
        return new Attachment(handle);
    }

    /// <summary>The context of the state (or coroutine) <paramref name="l"/>, which <see cref="Attach"/> set.</summary>
    public static unsafe LuaStateContext Of(nint l) => (LuaStateContext)GCHandle.FromIntPtr(*(nint*)(l - sizeof(nint))).Target!;

    /// <summary>Frees the handle (after <c>lua_close</c>: no function of the state can run any more).</summary>
    internal readonly struct Attachment(GCHandle handle) : IDisposable
    {
        public void Dispose() => handle.Free();
    }
}
