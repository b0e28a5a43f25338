using System.Runtime.InteropServices;
using KeraLua;
using Runtime.Memory;
using Runtime.Memory.Extensions;

namespace Runtime.Host.Lua;

/// <summary>
/// Runs one Lua 5.4 script the way the standalone <c>lua</c> does, on a state whose every byte is allocated in the
/// obj domain of the memory service (through <see cref="LuaRouting"/>, accounted under the tag <c>lua</c>).
/// </summary>
/// <remarks>
/// The standard libraries are open, plus the <c>memory</c> module (<see cref="MemoryModule"/>) and, when libz.so.1 is
/// there, the <c>zlib</c> module (<see cref="ZlibModule"/>). The script gets its
/// arguments as <c>...</c> and in the global <c>arg</c> (<c>arg[0]</c> the script, <c>arg[1..n]</c> its arguments).
/// A Lua error is reported as <c>lua</c> reports it (<c>lua: message</c> and the traceback) and fails the run.
/// </remarks>
internal static class LuaScript
{
    /// <summary>What a run did: whether the script succeeded, the error text when not, and the state's figures.</summary>
    internal sealed record Outcome(bool Succeeded, string? Error, long PeakBytes, long LiveBlocksAfterClose, long LiveBytesAfterClose, long Refusals, Memory.Tracing.TraceSnapshot? Sites)
    {
        /// <summary>What the script's zlib calls held in the raw domain (tag <c>zlib</c>): the peak, and blocks live after the run; null without libz.</summary>
        public (long PeakBytes, long LiveBlocks)? Zlib { get; init; }
    }

    public static unsafe Outcome Run(RuntimeMemory runtime, string scriptPath, string scriptName, IReadOnlyList<string> args)
    {
        using var route = new LuaRouting(runtime);
        using var zlib = new ZlibRouting(runtime); // the zlib module's streams: raw domain, tag "zlib"
        bool hasZlib;
        long blocksBefore = runtime.Obj.GetStatistics().LiveBlocks;
        long bytesBefore = runtime.Obj.LiveBytes;

        // KeraLua creates and closes the state; its allocator is the route's [UnmanagedCallersOnly] function itself (a
        // delegate made from a function pointer marshals back to that same pointer, with no thunk).
        var allocator = Marshal.GetDelegateForFunctionPointer<LuaAlloc>((nint)LuaRouting.AllocFunction);
        string? error;
        long peak;
        Memory.Tracing.TraceSnapshot? sites;
        using (var lua = new KeraLua.Lua(allocator, (nint)route.UserData))
        {
            if (lua.Handle == 0)
            {
                return new Outcome(false, "lua: cannot create state: not enough memory", 0, 0, 0, route.Account.Failures, null);
            }

            lua.OpenLibs();
            hasZlib = ZlibModule.Open(lua, zlib);
            error = RunIn(lua, runtime, route, scriptPath, scriptName, args);
            peak = route.Account.PeakBytes;
            sites = runtime.Tracer.IsTracing ? runtime.Tracer.TakeSnapshot() : null; // what the state holds, by Lua line
        } // lua_close: everything the state holds goes back through the route

        GC.KeepAlive(allocator);
        long blocksAfter = runtime.Obj.GetStatistics().LiveBlocks - blocksBefore;
        long bytesAfter = runtime.Obj.LiveBytes - bytesBefore;
        return new Outcome(error is null, error, peak, blocksAfter, bytesAfter, route.Account.Failures, sites)
        {
            Zlib = hasZlib ? (zlib.Account.PeakBytes, zlib.Account.LiveBlocks) : null,
        };
    }

    private static string? RunIn(KeraLua.Lua lua, RuntimeMemory runtime, LuaRouting route, string scriptPath, string scriptName, IReadOnlyList<string> args)
    {
        MemoryModule.Open(lua, runtime, route);

        lua.NewTable();
        lua.PushString(scriptName);
        lua.RawSetInteger(-2, 0);
        for (int i = 0; i < args.Count; i++)
        {
            lua.PushString(args[i]);
            lua.RawSetInteger(-2, i + 1);
        }

        lua.SetGlobal("arg");

        lua.GetGlobal("debug");
        lua.GetField(-1, "traceback"); // the message handler: the error and the traceback, as lua.c's msghandler
        lua.Remove(-2);
        int handler = lua.GetTop();

        using LuaFrameProvider.Scope scope = LuaFrameProvider.Enter(lua.Handle);
        LuaStatus status = scriptName == scriptPath
            ? lua.LoadFile(scriptPath) // chunk name "@" + the path as given, as lua.c
            : lua.LoadBuffer(File.ReadAllBytes(scriptPath), "@" + scriptName); // the bundled demo, named without its directory
        if (status != LuaStatus.OK)
        {
            return "lua: " + ErrorText(lua, status);
        }

        foreach (string a in args)
        {
            lua.PushString(a);
        }

        status = lua.PCall(args.Count, 0, handler);
        return status == LuaStatus.OK ? null : "lua: " + ErrorText(lua, status);
    }

    /// <summary>The error object on top of the stack as text, without calling a metamethod (which could raise).</summary>
    private static string ErrorText(KeraLua.Lua lua, LuaStatus status)
    {
        LuaType type = lua.Type(-1);
        string message = type is LuaType.String or LuaType.Number
            ? lua.ToString(-1, false)
            : status == LuaStatus.ErrMem ? "not enough memory" : $"(error object is a {lua.TypeName(type)} value)";
        lua.Pop(1);
        return message;
    }
}
