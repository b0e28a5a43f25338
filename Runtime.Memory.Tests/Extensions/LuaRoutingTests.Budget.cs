using Runtime.Memory.Extensions;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Extensions;

/// <summary>Lua under a budget: the allocation fails, Lua raises "not enough memory", and <c>pcall</c> catches it.</summary>
public sealed unsafe partial class LuaRoutingTests
{
    /// <summary>Grows a table until memory runs out, inside pcall; fails (a Lua error) unless the memory error was caught.</summary>
    private const string CaughtBomb = """
        local ok, err = pcall(function()
          local t = {}
          for i = 1, 10000000 do t[i] = string.rep("x", 64) .. i end
        end)
        if ok then error("the bomb was not stopped") end
        if not tostring(err):find("not enough memory") then error("unexpected error: " .. tostring(err)) end
        collectgarbage()
        local after = {}
        for i = 1, 100 do after[i] = i end -- the state goes on working
        """;

    private const string UncaughtBomb = """
        local t = {}
        for i = 1, 10000000 do t[i] = string.rep("x", 64) .. i end
        """;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_memory_bomb_under_a_budget_is_caught_by_pcall_and_the_state_survives(bool tagBudget)
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using var route = new LuaRouting(runtime);
        if (tagBudget)
        {
            route.Account.MaxBytes = 4 << 20;
        }
        else
        {
            runtime.Obj.MaxBytes = 4 << 20;
        }

        nint L = route.NewState();
        luaL_openlibs(L);
        Assert.Equal(LuaOk, Run(L, CaughtBomb));
        Assert.Equal(LuaErrMem, Run(L, UncaughtBomb));
        Assert.Equal(LuaOk, Run(L, "local s = 0 for i = 1, 1000 do s = s + i end"));

        long refusals = tagBudget ? route.Account.LimitRefusals : runtime.Obj.GetStatistics().LimitRefusals;
        Assert.True(refusals >= 2, $"{refusals} refusals");
        Assert.True(route.Account.PeakBytes <= 4 << 20);
        LuaRouting.Close(L);
        Assert.Equal(0, route.Account.LiveBytes);
        Assert.Equal(0, runtime.Obj.LiveBlocks);
    }
}
