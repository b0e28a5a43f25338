using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace Runtime.Host.Lua;

/// <summary>
/// Every Lua operation of the host that can allocate, run where Lua can catch its own out-of-memory error.
/// </summary>
/// <remarks>
/// <para>Lua reports an allocation failure by raising an error: a <c>longjmp</c> to the innermost protected call. Outside
/// one, Lua calls its panic function and aborts the process; inside one but from a C function written in C#, the jump
/// would cross managed frames, which .NET does not support. <c>lua.c</c> avoids the first by running everything in a
/// protected <c>pmain</c>; the host cannot write <c>pmain</c> in C#, so it keeps the rule with two primitives that use
/// only entry points Lua protects itself:</para>
/// <list type="bullet">
/// <item><see cref="Setup"/> opens the standard libraries, registers the host's modules and builds <c>arg</c> in one Lua
/// chunk, loaded (<c>luaL_loadbufferx</c> parses in protected mode) and called with <c>lua_pcallk</c>. The standard
/// libraries' <c>luaopen_*</c> functions and the modules' functions are passed in as light C functions, whose push
/// does not allocate; the chunk does what <c>luaL_openlibs</c> and <c>luaL_requiref</c> would.</item>
/// <item><see cref="PushString"/> makes a Lua string from bytes by loading and calling <c>return "…"</c> (the bytes
/// as a string literal, only <c>"</c>, <c>\</c>, CR and LF escaped), for the modules' functions, which run inside a
/// script's call.</item>
/// </list>
/// <para>So an allocation failure at any point of a run, including while the state is set up, ends in Lua's
/// "not enough memory" and a clean <c>lua_close</c>; the host's out-of-memory sweep fails every allocation in turn to
/// prove it.</para>
/// </remarks>
internal static unsafe class LuaProtected
{
    /// <summary>One of the host's modules: its global name and its functions (light C functions, no upvalues).</summary>
    internal sealed record Module(string Name, IReadOnlyList<(string Name, nint Function)> Functions);

    /// <summary>The standard libraries in <c>luaL_openlibs</c>' order (linit.c), each with its <c>luaopen_*</c>.</summary>
    private static readonly string[] StandardLibraries = ["_G", "package", "coroutine", "table", "io", "os", "string", "math", "utf8", "debug"];

    private static nint[]? s_openers;

    /// <summary>The <c>luaopen_*</c> functions of liblua54, looked up once.</summary>
    private static nint[] Openers()
    {
        if (s_openers is { } known)
        {
            return known;
        }

        nint library = NativeLibrary.Load("lua54", typeof(LuaProtected).Assembly, null);
        return s_openers = [.. StandardLibraries.Select(name => NativeLibrary.GetExport(library, name == "_G" ? "luaopen_base" : "luaopen_" + name))];
    }

    /// <summary>
    /// Opens the standard libraries, registers <paramref name="modules"/> as globals and in <c>package.loaded</c>, and
    /// sets <c>arg</c> as <c>lua.c</c> does (<c>arg[0]</c> the script's name, then its arguments). On success the stack
    /// holds <c>debug.traceback</c> (the message handler) and then the arguments as strings, and null is returned;
    /// otherwise the stack is as it was and the error is returned (for example "not enough memory").
    /// </summary>
    public static string? Setup(nint state, string scriptName, IReadOnlyList<string> args, IReadOnlyList<Module> modules)
    {
        nint[] openers = Openers();
        var chunk = new StringBuilder();
        chunk.Append("local f = {...}\n");
        chunk.Append("local G = f[1](\"_G\")\n");
        chunk.Append("local package = f[2](\"package\")\n");
        chunk.Append("local loaded = package.loaded\n");
        chunk.Append("loaded._G, loaded.package, G.package = G, package, package\n");
        chunk.Append("local function require_(name, lib) loaded[name] = lib; G[name] = lib end\n");
        for (int i = 2; i < StandardLibraries.Length; i++)
        {
            chunk.Append(CultureInfo.InvariantCulture, $"require_(\"{StandardLibraries[i]}\", f[{i + 1}](\"{StandardLibraries[i]}\"))\n");
        }

        int next = openers.Length + 1;
        foreach (Module module in modules)
        {
            chunk.Append("require_(").Append(Literal(module.Name)).Append(", {");
            foreach ((string name, _) in module.Functions)
            {
                chunk.Append(CultureInfo.InvariantCulture, $"[{Literal(name)}] = f[{next++}], ");
            }

            chunk.Append("})\n");
        }

        chunk.Append("G.arg = {[0] = ").Append(Literal(scriptName));
        foreach (string a in args)
        {
            chunk.Append(", ").Append(Literal(a));
        }

        chunk.Append("}\nreturn G.debug.traceback");
        foreach (string a in args)
        {
            chunk.Append(", ").Append(Literal(a));
        }

        chunk.Append('\n');

        int functions = next - 1;
        int top = LuaApi.lua_gettop(state);
        if (LuaApi.lua_checkstack(state, functions + args.Count + 2) == 0)
        {
            return "not enough memory";
        }

        if (Load(state, Encoding.UTF8.GetBytes(chunk.ToString()), "=(host setup)"u8) is { } loadError)
        {
            return loadError;
        }

        foreach (nint opener in openers)
        {
            LuaApi.lua_pushcclosure(state, (delegate* unmanaged<nint, int>)opener, 0);
        }

        foreach (Module module in modules)
        {
            foreach ((_, nint function) in module.Functions)
            {
                LuaApi.lua_pushcclosure(state, (delegate* unmanaged<nint, int>)function, 0);
            }
        }

        int status = LuaApi.lua_pcallk(state, functions, LuaApi.MultipleResults, 0, 0, null);
        if (status == LuaApi.Ok)
        {
            // A full collection before the script: what setting up made and dropped is freed, and the stack, grown for
            // the setup's arguments, shrinks back (Lua shrinks stacks as it collects), so that the script's figures and
            // its traced lines hold the script's own blocks rather than Lua resizing the stack in the middle of them.
            if (Load(state, "collectgarbage()"u8, "=(host setup)"u8) is { } collectError)
            {
                LuaApi.lua_settop(state, top);
                return collectError;
            }

            status = LuaApi.lua_pcallk(state, 0, 0, 0, 0, null);
        }

        if (status != LuaApi.Ok)
        {
            string error = ErrorText(state, status);
            LuaApi.lua_settop(state, top);
            return error;
        }

        return null;
    }

    /// <summary>
    /// Loads <paramref name="source"/> (text or a precompiled chunk) as a function on top of the stack, in protected
    /// mode; null on success, else the error (and the stack as it was).
    /// </summary>
    public static string? Load(nint state, ReadOnlySpan<byte> source, ReadOnlySpan<byte> chunkName)
    {
        Span<byte> name = stackalloc byte[chunkName.Length + 1];
        chunkName.CopyTo(name);
        name[^1] = 0;
        int status;
        fixed (byte* text = source)
        fixed (byte* n = name)
        {
            status = LuaApi.luaL_loadbufferx(state, text, (nuint)source.Length, n, null);
        }

        if (status == LuaApi.Ok)
        {
            return null;
        }

        string error = ErrorText(state, status);
        LuaApi.lua_settop(state, -2);
        return error;
    }

    /// <summary>
    /// Pushes a Lua string of <paramref name="bytes"/>; true on success. When Lua cannot allocate it, pushes Lua's error
    /// message instead ("not enough memory") and returns false. Needs two free stack slots (a C function has twenty).
    /// </summary>
    public static bool PushString(nint state, ReadOnlySpan<byte> bytes)
    {
        if (Load(state, ReturnLiteral(bytes), "=(string)"u8) is { } error)
        {
            PushMessage(state, error);
            return false;
        }

        int status = LuaApi.lua_pcallk(state, 0, 1, 0, 0, null);
        return status == LuaApi.Ok;
    }

    /// <summary>The error object on top of the stack as text, without calling a metamethod or converting in place
    /// (either could raise).</summary>
    public static string ErrorText(nint state, int status)
    {
        int type = LuaApi.lua_type(state, -1);
        if (type == LuaApi.TypeString)
        {
            nuint length;
            byte* text = LuaApi.lua_tolstring(state, -1, &length);
            return Encoding.UTF8.GetString(text, checked((int)length));
        }

        if (type == LuaApi.TypeNumber)
        {
            int isNumber;
            if (LuaApi.lua_isinteger(state, -1) != 0)
            {
                return LuaApi.lua_tointegerx(state, -1, &isNumber).ToString(CultureInfo.InvariantCulture);
            }

            double value = LuaApi.lua_tonumberx(state, -1, &isNumber);
            if (!double.IsFinite(value))
            {
                return double.IsNaN(value) ? "nan" : value > 0 ? "inf" : "-inf";
            }

            return value == Math.Floor(value) && Math.Abs(value) < 1e15 ? value.ToString("0.0", CultureInfo.InvariantCulture) : value.ToString("G14", CultureInfo.InvariantCulture);
        }

        return status == LuaApi.ErrorMemory
            ? "not enough memory"
            : $"(error object is a {Marshal.PtrToStringUTF8((nint)LuaApi.lua_typename(state, type))} value)";
    }

    /// <summary>Pushes <paramref name="message"/> if Lua can allocate it, else pushes nil (never raises).</summary>
    private static void PushMessage(nint state, string message)
    {
        if (Load(state, ReturnLiteral(Encoding.UTF8.GetBytes(message)), "=(string)"u8) is null && LuaApi.lua_pcallk(state, 0, 1, 0, 0, null) == LuaApi.Ok)
        {
            return;
        }

        // A failed load pushed nothing; a failed call left its error object (for an allocation, Lua's preallocated
        // "not enough memory"), which is the message to give.
        if (LuaApi.lua_type(state, -1) != LuaApi.TypeString)
        {
            LuaApi.lua_pushnil(state);
        }
    }

    /// <summary><c>return "…"</c> with <paramref name="bytes"/> as the literal.</summary>
    private static byte[] ReturnLiteral(ReadOnlySpan<byte> bytes)
    {
        var source = new List<byte>(bytes.Length + 16);
        source.AddRange("return "u8);
        AppendLiteral(source, bytes);
        return [.. source];
    }

    /// <summary>A Lua string literal of <paramref name="text"/> (UTF-8).</summary>
    private static string Literal(string text)
    {
        var source = new List<byte>(text.Length + 2);
        AppendLiteral(source, Encoding.UTF8.GetBytes(text));
        return Encoding.UTF8.GetString([.. source]);
    }

    /// <summary>
    /// A double-quoted literal: Lua's lexer takes every byte as itself inside one but the quote, the backslash and the
    /// line ends, which are written as three-digit decimal escapes (three digits, so a digit after one is not taken in).
    /// </summary>
    private static void AppendLiteral(List<byte> source, ReadOnlySpan<byte> bytes)
    {
        source.Add((byte)'"');
        foreach (byte b in bytes)
        {
            if (b is (byte)'"' or (byte)'\\' or (byte)'\n' or (byte)'\r')
            {
                source.Add((byte)'\\');
                source.Add((byte)('0' + (b / 100)));
                source.Add((byte)('0' + (b / 10 % 10)));
                source.Add((byte)('0' + (b % 10)));
            }
            else
            {
                source.Add(b);
            }
        }

        source.Add((byte)'"');
    }
}
