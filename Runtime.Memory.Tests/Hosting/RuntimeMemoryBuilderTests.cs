using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Runtime.Memory.Tests.Hosting;

/// <summary>
/// The builder <c>AddRuntimeMemory</c> returns configures, in code, what users configure: the allocator, hooks, the
/// frame provider, budgets, tracing, debug hooks, and (from <c>Runtime.Memory.Testing</c>) the fakes.
/// </summary>
public sealed unsafe class RuntimeMemoryBuilderTests
{
    private static ServiceProvider Build(Action<IRuntimeMemoryBuilder> configure, Dictionary<string, string?>? settings = null)
    {
        var services = new ServiceCollection();
        if (settings is not null)
        {
            services.AddSingleton<IConfiguration>(new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
        }

        configure(services.AddRuntimeMemory());
        return services.BuildServiceProvider();
    }

    [Fact]
    public void AddRuntimeMemory_is_found_with_the_dependency_injection_namespace_alone()
    {
        Assert.Equal("Microsoft.Extensions.DependencyInjection", typeof(RuntimeMemoryServiceCollectionExtensions).Namespace);
        Assert.Equal("Microsoft.Extensions.DependencyInjection", typeof(RuntimeMemoryBuilderExtensions).Namespace);
        Assert.Equal("Microsoft.Extensions.DependencyInjection", typeof(IRuntimeMemoryBuilder).Namespace);
        Assert.Equal("Microsoft.Extensions.DependencyInjection", typeof(RuntimeMemoryBuilderTestingExtensions).Namespace);
    }

    [Fact]
    public void UseAllocator_chooses_the_allocator_and_code_wins_over_configuration()
    {
        using ServiceProvider provider = Build(b => b.UseAllocator(AllocatorNames.Malloc), new() { ["RuntimeMemory:Allocator"] = "pymalloc" });
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal("malloc", runtime.AllocatorName);
        Assert.IsType<SystemAllocator>(runtime.Obj.Allocator);
    }

    [Fact]
    public void A_bad_allocator_name_in_code_stops_the_start_naming_the_value_and_the_allowed_ones()
    {
        using ServiceProvider provider = Build(b => b.UseAllocator("bogus"));
        string message = Assert.Throws<OptionsValidationException>(() => provider.ValidateRuntimeMemory()).Message;
        Assert.Contains("'bogus'", message);
        Assert.Contains("default, debug, malloc", message);
    }

    [Fact]
    public void UseAllocatorProvider_replaces_the_built_in_provider()
    {
        using ServiceProvider provider = Build(b => b.UseAllocatorProvider<MallocEverywhere>());
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal("malloc-everywhere", runtime.AllocatorName);
        Assert.IsType<SystemAllocator>(runtime.Mem.Allocator);
    }

    [Fact]
    public void AddHook_installs_the_hooks_in_call_order_below_the_tracer_and_they_see_the_calls()
    {
        RecordingAllocator? recorder = null;
        using ServiceProvider provider = Build(b => b
            .EnableTracing(frames: 1)
            .AddHook(MemoryDomainKind.Obj, _ => recorder = new RecordingAllocator())
            .AddHook(MemoryDomainKind.Obj, _ => new FailingAllocator()));
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal("tracing > failing > recording > pymalloc", runtime.Obj.DescribeChain());
        Assert.Equal("tracing > malloc", runtime.Raw.DescribeChain()); // hooks go only where they were added

        void* p = runtime.Obj.Malloc(24);
        Assert.Equal(1, runtime.Tracer.TracedBlocks); // the tracer on top saw it
        runtime.Obj.Free(p);
        Assert.Equal([AllocatorOperation.Malloc, AllocatorOperation.Free], recorder!.GetSnapshot().Select(c => c.Operation));
    }

    [Fact]
    public void A_hook_factory_that_returns_null_fails_the_creation_clearly()
    {
        using ServiceProvider provider = Build(b => b.AddHook(MemoryDomainKind.Mem, _ => null!));
        var error = Assert.Throws<InvalidOperationException>(() => provider.ValidateRuntimeMemory());
        Assert.Contains("mem domain returned null", error.Message);
    }

    [Fact]
    public void UseFrameProvider_gives_the_tracer_its_frames_before_tracing_starts()
    {
        using ServiceProvider provider = Build(b => b.EnableTracing(frames: 2).UseFrameProvider<ScriptFrames>());
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Same(provider.GetRequiredService<ScriptFrames>(), runtime.Tracer.FrameProvider);
        Assert.True(runtime.Tracer.IsTracing);
        void* p = runtime.Obj.Malloc(40);
        try
        {
            Traceback traceback = Assert.IsType<Traceback>(runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, p));
            Assert.Equal(new Frame("script.lua", 7), traceback.Frames[0]);
        }
        finally
        {
            runtime.Obj.Free(p);
        }
    }

    [Fact]
    public void SetLimit_and_SetTagLimit_set_the_budgets()
    {
        using ServiceProvider provider = Build(b => b.SetLimit(MemoryDomainKind.Obj, 4096).SetTagLimit("zlib", 8192));
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal(4096, runtime.Obj.MaxBytes);
        Assert.Null(runtime.Mem.MaxBytes);
        Assert.Equal(8192, runtime.Tag("ZLIB").MaxBytes);
        Assert.True(runtime.Obj.Malloc(8192) == null); // over the budget: refused
    }

    [Fact]
    public void UseDebugHooks_installs_the_debug_hooks_with_the_chosen_reaction()
    {
        using ServiceProvider provider = Build(b => b.UseAllocator(AllocatorNames.Malloc).UseDebugHooks(ViolationAction.Throw));
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        Assert.Equal("malloc_debug", runtime.AllocatorName);
        Assert.Equal("debug > malloc", runtime.Obj.DescribeChain());
        Assert.Equal(ViolationAction.Throw, runtime.Debugger.OnViolation);
    }

    [Fact]
    public void The_container_hands_out_the_obj_pool_and_UseMemoryPool_chooses_another_domain()
    {
        using (ServiceProvider provider = Build(_ => { }))
        {
            IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
            var pool = Assert.IsType<Runtime.Memory.Buffers.RuntimeMemoryPool>(provider.GetRequiredService<System.Buffers.MemoryPool<byte>>());
            Assert.Same(runtime.Obj, pool.Domain);
            Assert.Same(pool, provider.GetRequiredService<Runtime.Memory.Buffers.RuntimeMemoryPool>());
        }

        using (ServiceProvider provider = Build(b => b.UseMemoryPool(MemoryDomainKind.Raw)))
        {
            IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
            var pool = Assert.IsType<Runtime.Memory.Buffers.RuntimeMemoryPool>(provider.GetRequiredService<System.Buffers.MemoryPool<byte>>());
            Assert.Same(runtime.Raw, pool.Domain);
            using (System.Buffers.IMemoryOwner<byte> owner = pool.Rent(100))
            {
                Assert.Equal(1, runtime.Raw.LiveBlocks);
            }

            Assert.Equal(0, runtime.Raw.LiveBlocks);
        }
    }

    [Fact]
    public void UseFakeAllocator_swaps_in_the_fake_in_one_line_and_it_records_and_fails_on_demand()
    {
        using ServiceProvider provider = Build(b => b.UseFakeAllocator());
        IRuntimeMemory runtime = provider.ValidateRuntimeMemory();
        FakeAllocatorProvider fake = provider.GetRequiredService<FakeAllocatorProvider>();
        Assert.Equal("fake", runtime.AllocatorName);

        fake.Failures(MemoryDomainKind.Mem).FailOnly(2);
        void* first = runtime.Mem.Malloc(10);
        void* second = runtime.Mem.Malloc(10);
        Assert.True(first != null);
        Assert.True(second == null);
        runtime.Mem.Free(first);

        IReadOnlyList<RecordedCall> calls = fake.Calls(MemoryDomainKind.Mem).GetSnapshot();
        Assert.Equal([AllocatorOperation.Malloc, AllocatorOperation.Malloc, AllocatorOperation.Free], calls.Select(c => c.Operation));
        Assert.Equal(0, calls[1].Result);
        Assert.Equal(0, fake.Calls(MemoryDomainKind.Obj).Count);
    }

    [Fact]
    public void The_fake_says_clearly_when_no_runtime_was_built_with_it()
    {
        var fake = new FakeAllocatorProvider();
        var error = Assert.Throws<InvalidOperationException>(() => fake.Calls(MemoryDomainKind.Obj));
        Assert.Contains("No runtime has been built", error.Message);
    }

    private sealed class MallocEverywhere : IAllocatorProvider
    {
        public string Name => "malloc-everywhere";

        public MemoryAllocator CreateBaseAllocator(MemoryDomainKind domain) => new SystemAllocator();
    }

    private sealed class ScriptFrames : IFrameProvider
    {
        public int GetFrames(Span<Frame> frames, out int totalFrames)
        {
            frames[0] = new Frame("script.lua", 7);
            totalFrames = 1;
            return 1;
        }
    }
}
