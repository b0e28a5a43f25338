using System.Runtime.InteropServices;

namespace Runtime.Host.Lua;

/// <summary>
/// The few Lua 5.4 C API functions the host calls from inside Lua's own calls (the allocator's frame lookups, the
/// <c>memory</c> module's functions), bound with source-generated interop to <c>liblua54</c>, which the KeraLua package
/// ships. None of them raises a Lua error or allocates, so none can <c>longjmp</c> across a managed frame; the rest of
/// the API (loading and running scripts) goes through KeraLua, outside any callback.
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
        private nint _activeFunction;
    }

    [LibraryImport(Library)]
    public static partial int lua_getstack(nint state, int level, Debug* ar);

    [LibraryImport(Library)]
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

    /// <summary><c>lua_tolstring</c>; call it only on a string (on a number it converts in place, which allocates).</summary>
    [LibraryImport(Library)]
    public static partial byte* lua_tolstring(nint state, int index, nuint* length);

    [LibraryImport(Library)]
    public static partial int lua_type(nint state, int index);

    [LibraryImport(Library)]
    public static partial long lua_tointegerx(nint state, int index, int* isNumber);

    /// <summary><c>lua_upvalueindex(i)</c>: <c>LUA_REGISTRYINDEX - i</c>, with <c>LUA_REGISTRYINDEX = -LUAI_MAXSTACK - 1000</c>.</summary>
    public static int UpValueIndex(int i) => -1_000_000 - 1000 - i;

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
