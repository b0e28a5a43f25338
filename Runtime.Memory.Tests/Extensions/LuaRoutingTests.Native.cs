using Runtime.Memory.Extensions;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Extensions;

/// <summary>
/// The Lua route's native fast path (native/lua_route.c): used only where the domain runs the plain small-object
/// allocator, and counting exactly what the managed path counts, in the tag and in the domain.
/// </summary>
public sealed unsafe partial class LuaRoutingTests
{
    private const string Churn = """
        local keep = {}
        for i = 1, 20000 do
          local s = string.rep("ab", i % 200) .. i
          keep[i % 500 + 1] = { s, #s, { i } }
        end
        local t = {}
        for i = 1, 3000 do t[i] = string.rep("x", i % 300) end
        for i = 1, 3000 do t[i] = t[i]:sub(1, (i % 300) // 2) end -- shrinks: some blocks stay in a larger class
        collectgarbage()
        """;

    private static void SkipUnlessNative()
    {
        using RuntimeMemory probe = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using var route = new LuaRouting(probe);
        Skip.IfNot(route.UsesNativeCache, "libruntime_mem.so (the C part of Runtime.Memory, built when gcc is present) is not beside the tests");
    }

    [SkippableFact]
    public void The_native_path_is_taken_only_while_the_domain_runs_the_plain_small_object_allocator()
    {
        SkipUnlessNative();
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using var route = new LuaRouting(runtime);
        Assert.True(route.UsesNativeCache);
        runtime.Tracer.Start();
        Assert.False(route.UsesNativeCache); // every block and call site traced
        runtime.Tracer.Stop();
        Assert.True(route.UsesNativeCache);
        runtime.Obj.SetupDebugHooks();
        Assert.False(route.UsesNativeCache);

        using RuntimeMemory onMalloc = TestRuntimes.Create(AllocatorNames.Malloc);
        using var mallocRoute = new LuaRouting(onMalloc);
        Assert.False(mallocRoute.UsesNativeCache);
        Assert.True(mallocRoute.StaysNative); // straight to glibc, with the system allocator's header
        onMalloc.Obj.SetupDebugHooks();
        Assert.False(mallocRoute.StaysNative);
    }

    [SkippableTheory]
    [InlineData(AllocatorNames.Pymalloc)]
    [InlineData(AllocatorNames.Malloc)]
    [InlineData(AllocatorNames.Mimalloc)]
    public void The_native_path_counts_in_the_tag_and_the_domain_exactly_what_the_managed_path_counts(string allocator)
    {
        SkipUnlessNative();
        OptionalLibraries.SkipUnlessAvailable(allocator);
        (long Tag, long Domain, long Peak, long Allocations) RunOnce(bool native)
        {
            using RuntimeMemory runtime = TestRuntimes.Create(allocator);
            using var route = new LuaRouting(runtime);
            if (!native)
            {
                runtime.Obj.InstallHook(new ForwardingHook()); // the contract pipeline: every call managed
            }

            Assert.Equal(native, route.StaysNative);
            nint L = route.NewState();
            luaL_openlibs(L);
            Assert.Equal(LuaOk, Run(L, Churn));
            (long, long, long, long) during = (route.Account.LiveBytes, runtime.Obj.LiveBytes, route.Account.PeakBytes, route.Account.Allocations);
            Assert.Equal(route.Account.LiveBlocks, runtime.Obj.LiveBlocks);
            LuaRouting.Close(L);
            Assert.Equal((0L, 0L), (route.Account.LiveBlocks, route.Account.LiveBytes));
            Assert.Equal((0L, 0L), (runtime.Obj.LiveBlocks, runtime.Obj.LiveBytes));
            return during;
        }

        Assert.Equal(RunOnce(native: false), RunOnce(native: true));
    }

    [SkippableFact]
    public void Blocks_the_managed_path_allocated_are_freed_natively_with_their_true_size()
    {
        SkipUnlessNative();
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using var route = new LuaRouting(runtime);
        runtime.Tracer.Start(); // managed path: the shrinks in Churn keep some blocks in place, in a larger class
        nint L = route.NewState();
        luaL_openlibs(L);
        Assert.Equal(LuaOk, Run(L, Churn));
        runtime.Tracer.Stop();
        Assert.True(route.UsesNativeCache);
        Assert.Equal(LuaOk, Run(L, Churn)); // frees and resizes those blocks natively
        Assert.Equal(route.Account.LiveBlocks, runtime.Obj.LiveBlocks);
        LuaRouting.Close(L);
        Assert.Equal((0L, 0L), (runtime.Obj.LiveBlocks, runtime.Obj.LiveBytes));
        Assert.Empty(((SmallObjectAllocator)runtime.Obj.BaseAllocator).CheckInvariants());
    }

    [SkippableFact]
    public void States_on_several_threads_share_a_route_and_every_count_comes_out_exact()
    {
        SkipUnlessNative();
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using var route = new LuaRouting(runtime);
        var statuses = new int[4];
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            nint L = route.NewState();
            luaL_openlibs(L);
            statuses[t] = Run(L, Churn);
            LuaRouting.Close(L); // this thread's cache goes back
        })).ToArray();
        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        Assert.All(statuses, s => Assert.Equal(LuaOk, s));
        Assert.Equal((0L, 0L), (route.Account.LiveBlocks, route.Account.LiveBytes));
        Assert.Equal((0L, 0L), (runtime.Obj.LiveBlocks, runtime.Obj.LiveBytes));
        Assert.Equal(route.Account.Allocations, route.Account.Frees);
    }

    private sealed class ForwardingHook : MemoryHook
    {
        public override string Name => "forwarding";
    }
}
