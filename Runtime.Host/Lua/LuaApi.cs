using System.Runtime.InteropServices;

namespace Runtime.Host.Lua;

/// <summary>
/// The Lua 5.4 C API functions the host calls, bound with source-generated interop to <c>liblua54</c>, which the KeraLua
/// package ships (the state itself is created and closed by <see cref="Runtime.Memory.Extensions.Lua.LuaRouting"/>). None of them raises a Lua error: each either
/// does not allocate or runs in protected mode (<c>luaL_loadbufferx</c>, <c>lua_pcallk</c>, <c>lua_checkstack</c>), so none can
/// <c>longjmp</c> across a managed frame or reach Lua's panic function; <see cref="LuaProtected"/> builds everything
/// that allocates on them.
/// </summary>
internal static unsafe partial class LuaApi
{
    private const string Library = "lua54";

    /// <summary><c>lua_Debug</c> of Lua 5.4 (lua.h), field for field; <c>LUA_IDSIZE</c> is 60.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct Debug
    {
        public int Event;
        public byte* Name;
        public byte* NameWhat;
        public byte* What;
        public byte* Source;
        public nuint SourceLength;
        public int CurrentLine;
        public int LineDefined;
        public int LastLineDefined;
        public byte UpValues;
        public byte Parameters;
        public byte IsVarArg;
        public byte IsTailCall;
        public ushort FirstTransferred;
        public ushort Transferred;
        public fixed byte ShortSource[60];

        /// <summary><c>i_ci</c>, the private part: the <c>CallInfo</c> of the level <c>lua_getstack</c> found, which <c>lua_getinfo</c> reads.</summary>
        public nint CallInfo;
    }

    // The frame provider's two calls, made on every traced allocation from inside Lua's allocation callback: both are
    // short, never block, never allocate and never call back (lua_getinfo is only asked for "Sl", which writes into the
    // lua_Debug record and pushes nothing), so they run without the GC transition a P/Invoke otherwise makes.

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int lua_getstack(nint state, int level, Debug* ar);

    [LibraryImport(Library)]
    [SuppressGCTransition]
    public static partial int lua_getinfo(nint state, byte* what, Debug* ar);

    [LibraryImport(Library)]
    public static partial void lua_pushcclosure(nint state, delegate* unmanaged<nint, int> function, int upvalues);

    [LibraryImport(Library)]
    public static partial void lua_pushinteger(nint state, long value);

    [LibraryImport(Library)]
    public static partial void lua_pushboolean(nint state, int value);

    [LibraryImport(Library)]
    public static partial void lua_pushnil(nint state);

    [LibraryImport(Library)]
    public static partial byte* lua_pushlstring(nint state, byte* text, nuint length);

    [LibraryImport(Library)]
    public static partial void lua_pushvalue(nint state, int index);

    [LibraryImport(Library)]
    public static partial int lua_gettop(nint state);

    [LibraryImport(Library)]
    public static partial void lua_settop(nint state, int index);

    [LibraryImport(Library)]
    public static partial void lua_rotate(nint state, int index, int n);

    /// <summary>Grows the stack in protected mode: 0 (and no error raised) when it cannot.</summary>
    [LibraryImport(Library)]
    public static partial int lua_checkstack(nint state, int n);

    /// <summary>Parses a chunk in protected mode: a status, with the function or the error message on top.</summary>
    [LibraryImport(Library)]
    public static partial int luaL_loadbufferx(nint state, byte* buffer, nuint size, byte* name, byte* mode);

    [LibraryImport(Library)]
    public static partial int lua_pcallk(nint state, int arguments, int results, int handler, nint context, void* continuation);

    [LibraryImport(Library)]
    public static partial int lua_isinteger(nint state, int index);

    [LibraryImport(Library)]
    public static partial double lua_tonumberx(nint state, int index, int* isNumber);

    [LibraryImport(Library)]
    public static partial byte* lua_typename(nint state, int type);

    /// <summary><c>lua_tolstring</c>; call it only on a string (on a number it converts in place, which allocates).</summary>
    [LibraryImport(Library)]
    public static partial byte* lua_tolstring(nint state, int index, nuint* length);

    [LibraryImport(Library)]
    public static partial int lua_type(nint state, int index);

    [LibraryImport(Library)]
    public static partial long lua_tointegerx(nint state, int index, int* isNumber);

    public const int Ok = 0;
    public const int ErrorMemory = 4;
    public const int MultipleResults = -1;

    public const int TypeNone = -1;
    public const int TypeNil = 0;
    public const int TypeNumber = 3;
    public const int TypeString = 4;

    /// <summary>The integer argument at <paramref name="index"/>, or <paramref name="fallback"/> when it is absent or
    /// nil; null when it is there but not an integer (the caller returns nil and a message instead of raising).</summary>
    public static long? OptInteger(nint state, int index, long fallback)
    {
        int type = lua_type(state, index);
        if (type is TypeNone or TypeNil)
        {
            return fallback;
        }

        int ok;
        long value = lua_tointegerx(state, index, &ok);
        return ok != 0 ? value : null;
    }
}
