using System.Runtime.InteropServices;
using System.Text;
using Runtime.Memory;
using Runtime.Memory.Tracing;

namespace Runtime.Host.Lua;

/// <summary>
/// The <c>memory</c> module scripts use the way Python scripts use <c>tracemalloc</c> (a global table, also
/// <c>require "memory"</c>):
/// <code>
///  memory.used()                 live bytes of the obj domain (where the state's memory is)
///  memory.start([frames])        starts tracing with 1..65535 frames (default 1); false, message when it cannot
///  memory.stop()                 stops tracing and forgets the traces
///  memory.is_tracing()           true while tracing
///  memory.traced()               current, peak traced bytes (0, 0 when not tracing)
///  memory.snapshot()             takes a snapshot; returns its number (nil, message when not tracing)
///  memory.top([n], [snapshot])   the n (10) largest allocation sites by Lua file and line, tracemalloc-style lines
///  memory.compare(new, old, [n]) the n (10) largest differences between two snapshots, by line
///  memory.dump_profile(path, [snapshot])  writes a snapshot (a new one when none is given) as a gzip-compressed pprof
///                                heap profile; true, or nil, message (not tracing, a bad path, an I/O error)
/// </code>
/// </summary>
/// <remarks>
/// The functions never raise a Lua error (a <c>longjmp</c> must not cross the managed frames they run in): a bad
/// argument or a failure returns <c>nil</c> (or <c>false</c>) and a message. Strings are pushed through
/// <see cref="LuaProtected.PushString"/>, so a string Lua cannot allocate (a budget reached, or any allocation failure)
/// returns <c>nil, "not enough memory"</c> instead of raising.
/// </remarks>
internal static unsafe class MemoryModule
{
    /// <summary>The module for <see cref="LuaProtected.Setup"/>, which registers it as the global <c>memory</c> and in
    /// <c>package.loaded</c>; its functions read the state's <see cref="LuaStateContext"/>.</summary>
    public static LuaProtected.Module Module { get; } = new LuaProtected.Module("memory",
        [
            ("used", (nint)(delegate* unmanaged<nint, int>)&Used),
            ("start", (nint)(delegate* unmanaged<nint, int>)&Start),
            ("stop", (nint)(delegate* unmanaged<nint, int>)&Stop),
            ("is_tracing", (nint)(delegate* unmanaged<nint, int>)&IsTracing),
            ("traced", (nint)(delegate* unmanaged<nint, int>)&Traced),
            ("snapshot", (nint)(delegate* unmanaged<nint, int>)&Snapshot),
            ("top", (nint)(delegate* unmanaged<nint, int>)&Top),
            ("compare", (nint)(delegate* unmanaged<nint, int>)&Compare),
            ("dump_profile", (nint)(delegate* unmanaged<nint, int>)&DumpProfile),
        ]);

    private static MemoryTracer Tracer(nint l) => LuaStateContext.Of(l).Runtime.Tracer;

    /// <summary>Returns <c>nil, message</c> (<c>nil, "not enough memory"</c> when Lua cannot allocate the message).</summary>
    internal static int Fail(nint l, string message)
    {
        LuaApi.lua_pushnil(l);
        PushText(l, message);
        return 2;
    }

    /// <summary>Pushes <paramref name="text"/>, or Lua's "not enough memory" when it cannot be allocated (false then).</summary>
    private static bool PushText(nint l, string text) => LuaProtected.PushString(l, Encoding.UTF8.GetBytes(text));

    /// <summary>Returns the string <paramref name="bytes"/>, or <c>nil, "not enough memory"</c> when Lua cannot allocate
    /// it; for every module of the host whose functions return strings.</summary>
    internal static int Return(nint l, ReadOnlySpan<byte> bytes)
    {
        if (LuaProtected.PushString(l, bytes))
        {
            return 1;
        }

        LuaApi.lua_pushnil(l);
        LuaApi.lua_rotate(l, -2, 1); // nil, then the message
        return 2;
    }

    private static int Guarded(nint l, Func<nint, int> body)
    {
        try
        {
            return body(l);
        }
        catch (Exception ex)
        {
            return Fail(l, ex.Message);
        }
    }

    [UnmanagedCallersOnly]
    private static int Used(nint l)
    {
        LuaApi.lua_pushinteger(l, LuaStateContext.Of(l).Route.Domain.LiveBytes);
        return 1;
    }

    [UnmanagedCallersOnly]
    private static int Start(nint l) => Guarded(l, static l =>
    {
        long? frames = LuaApi.OptInteger(l, 1, 1);
        if (frames is not { } n || n < 1 || n > MemoryTracer.MaxFrames)
        {
            LuaApi.lua_pushboolean(l, 0);
            PushText(l, $"memory.start: frames must be an integer from 1 to {MemoryTracer.MaxFrames}");
            return 2;
        }

        if (Tracer(l).IsTracing)
        {
            Tracer(l).Stop();
        }

        Tracer(l).Start((int)n);
        LuaApi.lua_pushboolean(l, 1);
        return 1;
    });

    [UnmanagedCallersOnly]
    private static int Stop(nint l) => Guarded(l, static l =>
    {
        Tracer(l).Stop();
        return 0;
    });

    [UnmanagedCallersOnly]
    private static int IsTracing(nint l)
    {
        LuaApi.lua_pushboolean(l, Tracer(l).IsTracing ? 1 : 0);
        return 1;
    }

    [UnmanagedCallersOnly]
    private static int Traced(nint l)
    {
        (long current, long peak) = Tracer(l).GetTracedMemory();
        LuaApi.lua_pushinteger(l, current);
        LuaApi.lua_pushinteger(l, peak);
        return 2;
    }

    [UnmanagedCallersOnly]
    private static int Snapshot(nint l) => Guarded(l, static l =>
    {
        if (!Tracer(l).IsTracing)
        {
            return Fail(l, "memory.snapshot: not tracing (call memory.start() first)");
        }

        List<TraceSnapshot> snapshots = LuaStateContext.Of(l).Snapshots;
        snapshots.Add(Tracer(l).TakeSnapshot());
        LuaApi.lua_pushinteger(l, snapshots.Count);
        return 1;
    });

    private static TraceSnapshot? SnapshotAt(nint l, int index, out string? error)
    {
        error = null;
        List<TraceSnapshot> snapshots = LuaStateContext.Of(l).Snapshots;
        long? id = LuaApi.OptInteger(l, index, 0);
        if (id is not { } n || n < 0 || n > snapshots.Count)
        {
            error = $"no snapshot number {(id is null ? "(not an integer)" : id.ToString())}: memory.snapshot() returns 1 to {snapshots.Count}";
            return null;
        }

        if (n == 0)
        {
            if (!Tracer(l).IsTracing)
            {
                error = "not tracing (call memory.start() first)";
                return null;
            }

            return Tracer(l).TakeSnapshot();
        }

        return snapshots[(int)n - 1];
    }

    [UnmanagedCallersOnly]
    private static int Top(nint l) => Guarded(l, static l =>
    {
        long? limit = LuaApi.OptInteger(l, 1, 10);
        if (limit is not { } n || n < 1)
        {
            return Fail(l, "memory.top: n must be a positive integer");
        }

        if (SnapshotAt(l, 2, out string? error) is not { } snapshot)
        {
            return Fail(l, "memory.top: " + error);
        }

        var text = new StringBuilder();
        foreach (TraceStatistic statistic in snapshot.Statistics(TraceGrouping.Line).Take((int)Math.Min(n, int.MaxValue)))
        {
            text.Append(statistic).Append('\n');
        }

        return Return(l, Encoding.UTF8.GetBytes(text.ToString()));
    });

    [UnmanagedCallersOnly]
    private static int Compare(nint l) => Guarded(l, static l =>
    {
        if (SnapshotAt(l, 1, out string? error) is not { } newer || SnapshotAt(l, 2, out error) is not { } older)
        {
            return Fail(l, "memory.compare: " + error);
        }

        long? limit = LuaApi.OptInteger(l, 3, 10);
        if (limit is not { } n || n < 1)
        {
            return Fail(l, "memory.compare: n must be a positive integer");
        }

        var text = new StringBuilder();
        foreach (TraceStatisticDiff diff in newer.CompareTo(older, TraceGrouping.Line).Take((int)Math.Min(n, int.MaxValue)))
        {
            text.Append(diff).Append('\n');
        }

        return Return(l, Encoding.UTF8.GetBytes(text.ToString()));
    });

    [UnmanagedCallersOnly]
    private static int DumpProfile(nint l) => Guarded(l, static l =>
    {
        if (LuaApi.lua_type(l, 1) != LuaApi.TypeString)
        {
            return Fail(l, "memory.dump_profile: expects the path of the file to write");
        }

        nuint length;
        string path = Encoding.UTF8.GetString(LuaApi.lua_tolstring(l, 1, &length), checked((int)length));
        if (path.Length == 0 || path.Contains('\0', StringComparison.Ordinal))
        {
            return Fail(l, "memory.dump_profile: expects the path of the file to write");
        }

        if (SnapshotAt(l, 2, out string? error) is not { } snapshot)
        {
            return Fail(l, "memory.dump_profile: " + error);
        }

        try
        {
            snapshot.SaveProfile(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return Fail(l, $"memory.dump_profile: cannot write {path}: {ex.Message}");
        }

        LuaApi.lua_pushboolean(l, 1);
        return 1;
    });
}
