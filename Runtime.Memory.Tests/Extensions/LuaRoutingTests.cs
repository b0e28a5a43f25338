using System.Runtime.InteropServices;
using Runtime.Memory.Extensions;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Extensions;

/// <summary>Lua 5.4 (KeraLua's liblua54) with every byte of a state allocated in a domain and accounted under a tag.</summary>
public sealed unsafe partial class LuaRoutingTests
{
    private const int LuaOk = 0;
    private const int LuaErrMem = 4;

    /// <summary>Tables, strings, closures and garbage, with no standard library needed (so it can run before openlibs).</summary>
    private const string PureScript = """
        local t = {}
        for i = 1, 2000 do t[i] = { n = i, s = "item" .. i } end
        local function counter() local c = 0; return function() c = c + 1; return c end end
        local f = counter()
        for i = 1, 100 do f() end
        local s = ""
        for i = 1, 200 do s = s .. i end
        t = nil
        return f()
        """;

    [Theory]
    [InlineData(AllocatorNames.Pymalloc, MemoryDomainKind.Obj)]
    [InlineData(AllocatorNames.Malloc, MemoryDomainKind.Obj)]
    [InlineData(AllocatorNames.PymallocDebug, MemoryDomainKind.Obj)]
    [InlineData(AllocatorNames.Pymalloc, MemoryDomainKind.Mem)]
    public void A_script_runs_end_to_end_and_nothing_is_live_after_lua_close(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = TestRuntimes.Create(allocator);
        runtime.Debugger.OnViolation = ViolationAction.Throw;
        using var route = new LuaRouting(runtime, kind);
        nint L = route.NewState();
        Assert.NotEqual(0, L);
        luaL_openlibs(L);
        Assert.Equal(LuaOk, Run(L, """
            local words = {}
            for w in string.gmatch(string.rep("alpha beta gamma ", 500), "%a+") do words[#words + 1] = w:upper() end
            local co = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
            local sum = co() + co() + co()
            collectgarbage()
            return #words + sum
            """));
        long liveDuring = route.Account.LiveBytes;
        Assert.True(liveDuring > 20_000, $"a state with its libraries holds more than {liveDuring} bytes");
        Assert.Equal(route.Account.LiveBlocks, runtime[kind].LiveBlocks);

        LuaRouting.Close(L);
        Assert.Equal(0, route.Account.LiveBlocks);
        Assert.Equal(0, route.Account.LiveBytes);
        Assert.Equal(0, runtime[kind].LiveBlocks);
        Assert.True(route.Account.PeakBytes >= liveDuring);
        Assert.Equal(0, runtime.Debugger.Violations);
    }

    [Fact]
    public void Every_allocation_failing_in_turn_ends_in_Lua_s_memory_error_and_leaks_nothing()
    {
        int allocations;
        using (RuntimeMemory probe = TestRuntimes.Create(AllocatorNames.Pymalloc))
        using (var route = new LuaRouting(probe))
        {
            nint L = route.NewState();
            Assert.Equal(LuaOk, Run(L, PureScript));
            LuaRouting.Close(L);
            allocations = (int)route.Account.Allocations;
        }

        Assert.InRange(allocations, 100, 20_000);
        int step = Math.Max(1, allocations / 400); // every index up to 400, then a spread over the rest
        int memoryErrors = 0;
        for (int i = 1; i <= allocations; i += i <= 400 ? 1 : step)
        {
            using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
            var failing = new FailingAllocator();
            runtime.Obj.InstallHook(failing);
            failing.FailOnly(i);
            using var route = new LuaRouting(runtime);

            nint L = route.NewState();
            if (L == 0)
            {
                memoryErrors++; // lua_newstate returns NULL when it cannot allocate the state
            }
            else
            {
                int status = Run(L, PureScript);
                Assert.True(status is LuaOk or LuaErrMem, $"failing allocation {i}: status {status}");
                memoryErrors += status == LuaErrMem ? 1 : 0;
                LuaRouting.Close(L);
            }

            Assert.Equal(0, route.Account.LiveBlocks);
            Assert.Equal(0, runtime.Obj.LiveBlocks);
        }

        // Lua retries a failed allocation after an emergency collection, so some single failures are absorbed;
        // most must surface as "not enough memory".
        Assert.True(memoryErrors > 0, "no failure reached Lua as a memory error");
    }

    /// <summary>Loads and runs <paramref name="script"/> in protected mode; returns Lua's status (0 = ok, 4 = out of memory).</summary>
    private static int Run(nint L, string script)
    {
        int status = luaL_loadstring(L, script);
        if (status == LuaOk)
        {
            status = lua_pcallk(L, 0, 0, 0, 0, null);
        }

        lua_settop(L, 0);
        return status;
    }

    [LibraryImport("lua54", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int luaL_loadstring(nint L, string s);

    [LibraryImport("lua54")]
    private static partial int lua_pcallk(nint L, int nargs, int nresults, int errfunc, nint ctx, void* k);

    [LibraryImport("lua54")]
    private static partial void lua_settop(nint L, int index);

    [LibraryImport("lua54")]
    private static partial void luaL_openlibs(nint L);
}
