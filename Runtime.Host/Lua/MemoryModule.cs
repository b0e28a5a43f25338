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
/// </code>
/// </summary>
/// <remarks>
/// The functions never raise a Lua error (a <c>longjmp</c> must not cross the managed frames they run in): a bad
/// argument or a failure returns <c>nil</c> (or <c>false</c>) and a message. A function that returns text first checks
/// that the state's budgets (the obj domain's, the <c>lua</c> tag's) leave room for it, since pushing a string
/// allocates and a refused allocation would raise; without room it returns <c>nil, "not enough memory"</c>, with the
/// message made when the module was opened.
/// </remarks>
internal static unsafe class MemoryModule
{
    private static MemoryModuleContext? s_context;

    /// <summary>What the module's functions read: one running host per process.</summary>
    internal sealed class MemoryModuleContext(RuntimeMemory runtime, Memory.Extensions.LuaRouting route)
    {
        public RuntimeMemory Runtime { get; } = runtime;
        public Memory.Extensions.LuaRouting Route { get; } = route;
        public List<TraceSnapshot> Snapshots { get; } = [];
    }

    /// <summary>Registers the module as the global <c>memory</c> and in <c>package.loaded</c>.</summary>
    public static void Open(KeraLua.Lua lua, RuntimeMemory runtime, Memory.Extensions.LuaRouting route)
    {
        s_context = new MemoryModuleContext(runtime, route);
        lua.NewTable();
        Add(lua, "used", &Used);
        Add(lua, "start", &Start);
        Add(lua, "stop", &Stop);
        Add(lua, "is_tracing", &IsTracing);
        Add(lua, "traced", &Traced);
        Add(lua, "snapshot", &Snapshot);
        Add(lua, "top", &Top);
        Add(lua, "compare", &Compare);
        lua.PushCopy(-1);
        lua.SetGlobal("memory");
        lua.GetGlobal("package");
        lua.GetField(-1, "loaded");
        lua.PushCopy(-3);
        lua.SetField(-2, "memory");
        lua.Pop(3);
    }

    /// <summary>Each function gets one upvalue: the "not enough memory" message, pushed without allocating.</summary>
    internal static void Add(KeraLua.Lua lua, string name, delegate* unmanaged<nint, int> function)
    {
        lua.PushString("not enough memory");
        LuaApi.lua_pushcclosure(lua.Handle, function, 1);
        lua.SetField(-2, name);
    }

    private static MemoryTracer Tracer => s_context!.Runtime.Tracer;

    internal static int Fail(nint l, string message)
    {
        LuaApi.lua_pushnil(l);
        return PushText(l, message) ? 2 : 1;
    }

    /// <summary>Pushes <paramref name="text"/> when the budgets leave room for it, else the module's "not enough
    /// memory" message (an upvalue: no allocation); false in that case.</summary>
    private static bool PushText(nint l, string text) => PushBytes(l, Encoding.UTF8.GetBytes(text));

    /// <summary><see cref="PushText"/> for bytes: a Lua string of them when the budgets leave room (with 4 KiB to
    /// spare), else the "not enough memory" upvalue; for every module of the host whose functions return strings.</summary>
    internal static bool PushBytes(nint l, ReadOnlySpan<byte> bytes)
    {
        if (!HasRoomFor(bytes.Length + 4096))
        {
            LuaApi.lua_pushvalue(l, LuaApi.UpValueIndex(1));
            return false;
        }

        fixed (byte* p = bytes)
        {
            LuaApi.lua_pushlstring(l, p, (nuint)bytes.Length);
        }

        return true;
    }

    private static bool HasRoomFor(long bytes)
    {
        MemoryModuleContext context = s_context!;
        MemoryDomain domain = context.Route.Domain;
        if (domain.MaxBytes is { } domainMax && domain.LiveBytes + bytes > domainMax)
        {
            return false;
        }

        return context.Route.Account.MaxBytes is not { } tagMax || context.Route.Account.LiveBytes + bytes <= tagMax;
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
        LuaApi.lua_pushinteger(l, s_context!.Route.Domain.LiveBytes);
        return 1;
    }

    [UnmanagedCallersOnly]
    private static int Start(nint l) => Guarded(l, static l =>
    {
        long? frames = LuaApi.OptInteger(l, 1, 1);
        if (frames is not { } n || n < 1 || n > MemoryTracer.MaxFrames)
        {
            LuaApi.lua_pushboolean(l, 0);
            return 1 + (PushText(l, $"memory.start: frames must be an integer from 1 to {MemoryTracer.MaxFrames}") ? 1 : 0);
        }

        if (Tracer.IsTracing)
        {
            Tracer.Stop();
        }

        Tracer.Start((int)n);
        LuaApi.lua_pushboolean(l, 1);
        return 1;
    });

    [UnmanagedCallersOnly]
    private static int Stop(nint l) => Guarded(l, static l =>
    {
        Tracer.Stop();
        return 0;
    });

    [UnmanagedCallersOnly]
    private static int IsTracing(nint l)
    {
        LuaApi.lua_pushboolean(l, Tracer.IsTracing ? 1 : 0);
        return 1;
    }

    [UnmanagedCallersOnly]
    private static int Traced(nint l)
    {
        (long current, long peak) = Tracer.GetTracedMemory();
        LuaApi.lua_pushinteger(l, current);
        LuaApi.lua_pushinteger(l, peak);
        return 2;
    }

    [UnmanagedCallersOnly]
    private static int Snapshot(nint l) => Guarded(l, static l =>
    {
        if (!Tracer.IsTracing)
        {
            return Fail(l, "memory.snapshot: not tracing (call memory.start() first)");
        }

        List<TraceSnapshot> snapshots = s_context!.Snapshots;
        snapshots.Add(Tracer.TakeSnapshot());
        LuaApi.lua_pushinteger(l, snapshots.Count);
        return 1;
    });

    private static TraceSnapshot? SnapshotAt(nint l, int index, out string? error)
    {
        error = null;
        List<TraceSnapshot> snapshots = s_context!.Snapshots;
        long? id = LuaApi.OptInteger(l, index, 0);
        if (id is not { } n || n < 0 || n > snapshots.Count)
        {
            error = $"no snapshot number {(id is null ? "(not an integer)" : id.ToString())}: memory.snapshot() returns 1 to {snapshots.Count}";
            return null;
        }

        if (n == 0)
        {
            if (!Tracer.IsTracing)
            {
                error = "not tracing (call memory.start() first)";
                return null;
            }

            return Tracer.TakeSnapshot();
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

        return PushText(l, text.ToString()) ? 1 : Fail(l, "not enough memory");
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

        return PushText(l, text.ToString()) ? 1 : Fail(l, "not enough memory");
    });
}
