using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using KeraLua;
using Runtime.Memory.Extensions;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>lua</c>: binary-trees of depth 16 (the benchmarks game's workload, written here) on a Lua 5.4 state, with every
/// allocation of the state going where the row says: through the host's path (<see cref="LuaRouting"/> into the obj
/// domain) on the allocator named after "on" (<c>default</c>, the small-object allocator; <c>malloc</c>;
/// <c>mimalloc</c>), or straight to glibc (Lua's own <c>l_alloc</c>, no managed code at all: the baseline, the library's
/// own allocator) or to mimalloc or tcmalloc (a <c>lua_Alloc</c> calling their realloc and free through function
/// pointers). One operation is one whole run: new state, the script, <c>lua_close</c>. <c>--compare</c> sets each route
/// row against Lua's own allocator, and against the peer it runs on.
/// </summary>
[BenchmarkCategory("lua")]
public unsafe class LuaBenchmarks
{
    private const int Depth = 16;

    internal const string BinaryTrees = """
        local function bottom_up(depth)
          if depth == 0 then return {} end
          depth = depth - 1
          return { bottom_up(depth), bottom_up(depth) }
        end

        local function check(tree)
          if tree[1] then return 1 + check(tree[1]) + check(tree[2]) end
          return 1
        end

        local max_depth = math.max(6, ...)
        local total = check(bottom_up(max_depth + 1))
        local long_lived = bottom_up(max_depth)
        for depth = 4, max_depth, 2 do
          local iterations = 1 << (max_depth - depth + 4)
          local sum = 0
          for _ = 1, iterations do sum = sum + check(bottom_up(depth)) end
          total = total + sum
        end
        return total + check(long_lived)
        """;

    /// <summary>What depth 16 must add up to, whatever the allocator (every node checked once).</summary>
    /// <remarks>A tree of depth d has 2^(d+1) − 1 nodes: the stretch tree (depth 17), the long-lived one (16), and
    /// 2^(16 − d + 4) trees of each even depth d from 4 to 16.</remarks>
    internal const long ExpectedTotal = 14_985_902;

    private RuntimeMemory _malloc = null!;
    private RuntimeMemory _default = null!;
    private RuntimeMemory? _mimalloc;

    [GlobalSetup]
    public void Setup()
    {
        _malloc = RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.Malloc });
        _default = RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.Default });
        _mimalloc = Peers.HasMimalloc ? RuntimeMemory.Create(new Hosting.RuntimeMemoryOptions { Allocator = AllocatorNames.Mimalloc }) : null;
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _malloc.Dispose();
        _default.Dispose();
        _mimalloc?.Dispose();
    }

    /// <summary>The state routed into the obj domain of a runtime on <c>default</c> (the small-object allocator).</summary>
    [Benchmark(Description = "route -> obj on default")]
    public long RouteDefault() => RunRouted(_default);

    /// <summary>The state routed into the obj domain of a runtime on <c>malloc</c>: the same allocator as Lua's own, so
    /// its ratio to that row is the cost of the route alone.</summary>
    [Benchmark(Description = "route -> obj on malloc")]
    public long RouteMalloc() => RunRouted(_malloc);

    /// <summary>The state routed into the obj domain of a runtime on <c>mimalloc</c>: to set against the mimalloc row
    /// (mimalloc without the route) and against Lua's own allocator.</summary>
    [Benchmark(Description = "route -> obj on mimalloc")]
    public long RouteMimalloc() => Peers.CheckMimalloc() ? RunRouted(_mimalloc!) : 0;

    /// <summary>Lua's own allocator (<c>l_alloc</c>: glibc's realloc and free, called from C): the baseline.</summary>
    [Benchmark(Baseline = true, Description = "glibc (Lua's own l_alloc)")]
    public long Glibc()
    {
        using var lua = new KeraLua.Lua(openLibs: false);
        return Run(lua);
    }

    [Benchmark(Description = "mimalloc (lua_Alloc through function pointers)")]
    public long Mimalloc()
    {
        if (!Peers.CheckMimalloc())
        {
            return 0;
        }

        using var lua = new KeraLua.Lua(MimallocAlloc, 0);
        return Run(lua);
    }

    [Benchmark(Description = "tcmalloc (lua_Alloc through function pointers)")]
    public long Tcmalloc()
    {
        if (!Peers.CheckTcmalloc())
        {
            return 0;
        }

        using var lua = new KeraLua.Lua(TcmallocAlloc, 0);
        return Run(lua);
    }

    private static readonly LuaAlloc TcmallocAlloc = Marshal.GetDelegateForFunctionPointer<LuaAlloc>((nint)(delegate* unmanaged<void*, void*, nuint, nuint, void*>)&TcAlloc);

    [UnmanagedCallersOnly]
    private static void* TcAlloc(void* ud, void* ptr, nuint osize, nuint nsize)
    {
        if (nsize == 0)
        {
            Peers.TcFree(ptr);
            return null;
        }

        return Peers.TcRealloc(ptr, nsize);
    }

    private static readonly LuaAlloc MimallocAlloc = Marshal.GetDelegateForFunctionPointer<LuaAlloc>((nint)(delegate* unmanaged<void*, void*, nuint, nuint, void*>)&MiAlloc);

    private static readonly LuaAlloc RouteAlloc = Marshal.GetDelegateForFunctionPointer<LuaAlloc>((nint)LuaRouting.AllocFunction);

    [UnmanagedCallersOnly]
    private static void* MiAlloc(void* ud, void* ptr, nuint osize, nuint nsize)
    {
        if (nsize == 0)
        {
            Peers.MiFree(ptr);
            return null;
        }

        return Peers.MiRealloc(ptr, nsize);
    }

    internal static long RunRouted(RuntimeMemory runtime)
    {
        using var route = new LuaRouting(runtime);
        using var lua = new KeraLua.Lua(RouteAlloc, (nint)route.UserData);
        return Run(lua);
    }

    private static long Run(KeraLua.Lua lua)
    {
        lua.OpenLibs();
        if (lua.LoadString(BinaryTrees, "=binary-trees") != LuaStatus.OK)
        {
            throw new InvalidOperationException(lua.ToString(-1, false));
        }

        lua.PushInteger(Depth);
        if (lua.PCall(1, 1, 0) != LuaStatus.OK)
        {
            throw new InvalidOperationException(lua.ToString(-1, false));
        }

        long total = lua.ToInteger(-1);
        return total == ExpectedTotal ? total : throw new InvalidOperationException($"binary-trees added up to {total}, not {ExpectedTotal}");
    }
}
