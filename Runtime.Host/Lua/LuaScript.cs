using Runtime.Memory;
using Runtime.Memory.Extensions;
using Runtime.Memory.Extensions.Lua;
using Runtime.Memory.Extensions.Zlib;

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

    public static Outcome Run(IRuntimeMemory runtime, string scriptPath, string scriptName, IReadOnlyList<string> args)
    {
        using var route = new LuaRouting(runtime);
        using var zlib = new ZlibRouting(runtime); // the zlib module's streams: raw domain, tag "zlib"
        bool hasZlib;
        long blocksBefore = runtime.Obj.GetStatistics().LiveBlocks;
        long bytesBefore = runtime.Obj.LiveBytes;

        // The state is the route's own (lua_newstate with its allocator, which returns NULL when even the state cannot
        // be allocated); KeraLua's wrapper is not used, since its constructor does not survive a failed lua_newstate.
        string? error;
        long peak;
        Memory.Tracing.TraceSnapshot? sites;
        nint state = route.NewState();
        if (state == 0)
        {
            return new Outcome(false, "lua: cannot create state: not enough memory", 0, 0, 0, route.Account.Failures, null);
        }

        var modules = new List<LuaProtected.Module> { MemoryModule.Module };
        LuaProtected.Module? zlibModule = ZlibModule.Open();
        hasZlib = zlibModule is not null;
        if (zlibModule is not null)
        {
            modules.Add(zlibModule);
        }

        LuaStateContext.Attachment context = LuaStateContext.Attach(state, new LuaStateContext(runtime, route, hasZlib ? zlib : null));
        try
        {
            error = RunIn(state, scriptPath, scriptName, args, modules);
            peak = route.Account.PeakBytes;
            sites = runtime.Tracer.IsTracing ? runtime.Tracer.TakeSnapshot() : null; // what the state holds, by Lua line
        }
        finally
        {
            LuaRouting.Close(state); // everything the state holds goes back through the route
            context.Dispose();
        }

        long blocksAfter = runtime.Obj.GetStatistics().LiveBlocks - blocksBefore;
        long bytesAfter = runtime.Obj.LiveBytes - bytesBefore;
        return new Outcome(error is null, error, peak, blocksAfter, bytesAfter, route.Account.Failures, sites)
        {
            Zlib = hasZlib ? (zlib.Account.PeakBytes, zlib.Account.LiveBlocks) : null,
        };
    }

    /// <summary>
    /// Sets the state up and runs the script in it, as <c>lua.c</c> does, with every step that can allocate in protected
    /// mode (<see cref="LuaProtected"/>); null on success, else the error as <c>lua.c</c> prints it.
    /// </summary>
    private static unsafe string? RunIn(nint state, string scriptPath, string scriptName, IReadOnlyList<string> args, IReadOnlyList<LuaProtected.Module> modules)
    {
        if (LuaProtected.Setup(state, scriptName, args, modules) is { } setupError)
        {
            return "lua: cannot set up the state: " + setupError;
        }

        const int Handler = 1; // debug.traceback, below the arguments: the error and the traceback, as lua.c's msghandler
        byte[] source;
        try
        {
            source = File.ReadAllBytes(scriptPath);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return $"lua: cannot read {scriptName}: {ex.Message}";
        }

        using LuaFrameProvider.Scope scope = LuaFrameProvider.Enter(state);
        if (LuaApi.lua_checkstack(state, 1) == 0)
        {
            return "lua: not enough memory";
        }

        // The chunk is named "@" + the script as given, as lua.c names it; a UTF-8 byte order mark and a first line
        // starting with '#' are skipped as luaL_loadfilex skips them (the line's end is kept, so line numbers stay).
        if (LuaProtected.Load(state, SkipPrefix(source), System.Text.Encoding.UTF8.GetBytes("@" + scriptName)) is { } loadError)
        {
            return "lua: " + loadError;
        }

        LuaApi.lua_rotate(state, Handler + 1, 1); // the chunk below its arguments
        int status = LuaApi.lua_pcallk(state, args.Count, 0, Handler, 0, null);
        string? error = status == LuaApi.Ok ? null : "lua: " + LuaProtected.ErrorText(state, status);
        LuaApi.lua_settop(state, 0);
        return error;
    }

    /// <summary>The script without a UTF-8 byte order mark and without the text of a first line that starts with '#'.</summary>
    internal static ReadOnlySpan<byte> SkipPrefix(ReadOnlySpan<byte> source)
    {
        if (source.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF]))
        {
            source = source[3..];
        }

        if (source.Length > 0 && source[0] == (byte)'#')
        {
            int end = source.IndexOf((byte)'\n');
            source = end < 0 ? [] : source[end..];
        }

        return source;
    }
}
