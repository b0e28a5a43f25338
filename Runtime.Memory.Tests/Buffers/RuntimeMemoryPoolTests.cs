using System.Buffers;
using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Runtime.Memory.Buffers;
using Runtime.Memory.Hosting;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Buffers;

/// <summary>
/// <see cref="RuntimeMemoryPool"/>: buffers that are blocks of a domain, rented and disposed from safe code, accounted,
/// budgeted, traced and checked like any block; disposal exactly once; nothing read after Dispose.
/// </summary>
public sealed unsafe class RuntimeMemoryPoolTests
{
    [Theory]
    [InlineData(AllocatorNames.Default, 1000)]
    [InlineData(AllocatorNames.Default, 100)]   // the small-object allocator's sizes
    [InlineData(AllocatorNames.Malloc, 70_000)] // past the 64 KiB publication threshold
    public void A_rented_buffer_is_a_live_block_of_the_domain_until_disposed(string allocator, int size)
    {
        using RuntimeMemory runtime = RuntimeMemory.Create(new RuntimeMemoryOptions { Allocator = allocator });
        RuntimeMemoryPool pool = runtime.Obj.AsMemoryPool();

        IMemoryOwner<byte> owner = pool.Rent(size);
        Memory<byte> memory = owner.Memory;
        Assert.Equal(size, memory.Length); // exactly what was asked for: a write past it is an overrun
        for (int i = 0; i < size; i++)
        {
            memory.Span[i] = (byte)(i * 7);
        }

        for (int i = 0; i < size; i++)
        {
            Assert.Equal((byte)(i * 7), memory.Span[i]);
        }

        using (MemoryHandle pin = memory.Pin())
        {
            Assert.Equal(0u, (nuint)pin.Pointer % MemoryDomain.Alignment);
            Assert.Equal((byte)7, ((byte*)pin.Pointer)[1]); // the span is the block itself
        }

        Assert.Equal(1, runtime.Obj.LiveBlocks);
        Assert.InRange(runtime.Obj.LiveBytes, size, size + 15);
        Assert.Equal(0, runtime.Raw.LiveBlocks + runtime.Mem.LiveBlocks);

        owner.Dispose();
        Assert.Equal(0, runtime.Obj.LiveBlocks);
        Assert.Equal(0, runtime.Obj.LiveBytes);
        Assert.Equal(1, runtime.Obj.GetStatistics().Frees);
    }

    [Fact]
    public void Rent_with_no_size_gives_the_default_size_and_sizes_below_minus_one_are_refused()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        MemoryPool<byte> pool = runtime.Mem.AsMemoryPool();
        using (IMemoryOwner<byte> owner = pool.Rent())
        {
            Assert.Equal(RuntimeMemoryPool.DefaultBufferSize, owner.Memory.Length);
            Assert.Equal(4096, runtime.Mem.LiveBytes);
        }

        using (IMemoryOwner<byte> empty = pool.Rent(0))
        {
            Assert.Equal(0, empty.Memory.Length);
            Assert.Equal(1, runtime.Mem.LiveBlocks); // size 0 is a distinct block, as the domain gives
        }

        Assert.Equal(int.MaxValue, pool.MaxBufferSize);
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => pool.Rent(-2));
        Assert.Equal("minBufferSize", ex.ParamName);
        Assert.Equal(0, runtime.Mem.LiveBlocks);
    }

    [Fact]
    public void A_second_dispose_does_nothing_even_under_the_debug_hooks()
    {
        // Under the debug hooks with Throw, a second free of the block would throw AlreadyFreed.
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Throw);
        IMemoryOwner<byte> owner = runtime.Obj.AsMemoryPool().Rent(64);
        owner.Dispose();
        owner.Dispose();
        owner.Dispose();

        DomainStatistics stats = runtime.Obj.GetStatistics();
        Assert.Equal(1, stats.Allocations);
        Assert.Equal(1, stats.Frees);
        Assert.Equal(0, runtime.Debugger.Violations);
    }

    [Fact]
    public void Any_use_after_dispose_throws_ObjectDisposedException_without_reading_the_block()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Throw);
        IMemoryOwner<byte> owner = runtime.Obj.AsMemoryPool().Rent(128);
        Memory<byte> taken = owner.Memory; // taken while rented, used after
        owner.Dispose();

        var ex = Assert.Throws<ObjectDisposedException>(() => owner.Memory);
        Assert.Contains("obj domain", ex.Message);
        Assert.Contains("128 bytes", ex.Message);
        Assert.Throws<ObjectDisposedException>(() => taken.Span.Length);
        Assert.Throws<ObjectDisposedException>(() => taken.Pin());
        Assert.Throws<ObjectDisposedException>(() => ((MemoryManager<byte>)owner).GetSpan());
        Assert.Throws<ObjectDisposedException>(() => taken.ToArray());
        Assert.Equal(0, runtime.Debugger.Violations);
        Assert.Equal(0, runtime.Obj.LiveBlocks);
    }

    [Fact]
    public void Dispose_while_pinned_frees_at_the_last_unpin()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Throw);
        IMemoryOwner<byte> owner = runtime.Obj.AsMemoryPool().Rent(64);
        MemoryHandle first = owner.Memory.Pin();
        MemoryHandle second = ((MemoryManager<byte>)owner).Pin(10);
        Assert.Equal((nint)first.Pointer + 10, (nint)second.Pointer);

        owner.Dispose();
        Assert.Throws<ObjectDisposedException>(() => owner.Memory);
        Assert.Equal(1, runtime.Obj.LiveBlocks); // still allocated for the pins
        ((byte*)first.Pointer)[63] = 0x5A;        // and still writable (the debug hooks would report a write to a freed block)

        first.Dispose();
        Assert.Equal(1, runtime.Obj.LiveBlocks);
        second.Dispose();
        Assert.Equal(0, runtime.Obj.LiveBlocks); // the last unpin freed it
        Assert.Equal(0, runtime.Debugger.Violations);

        owner.Dispose(); // still nothing more
        Assert.Equal(1, runtime.Obj.GetStatistics().Frees);
        Assert.Throws<InvalidOperationException>(() => ((MemoryManager<byte>)owner).Unpin()); // more unpins than pins
        using IMemoryOwner<byte> small = runtime.Obj.AsMemoryPool().Rent(8);
        Assert.Throws<ArgumentOutOfRangeException>(() => ((MemoryManager<byte>)small).Pin(9));
        using (((MemoryManager<byte>)small).Pin(8)) { } // the end itself is a valid position
    }

    [Fact]
    public void A_buffer_over_the_budget_is_refused_with_the_domain_and_the_budget_named()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        runtime.Obj.MaxBytes = 64 * 1024;
        RuntimeMemoryPool pool = runtime.Obj.AsMemoryPool();
        using IMemoryOwner<byte> held = pool.Rent(40 * 1024);

        var ex = Assert.Throws<InsufficientMemoryException>(() => pool.Rent(30 * 1024));
        Assert.IsAssignableFrom<OutOfMemoryException>(ex);
        Assert.Contains("obj domain's budget", ex.Message);
        Assert.Contains("30,720 bytes", ex.Message);
        Assert.Contains("MaxBytes = 65,536 bytes, 40,960 bytes live", ex.Message);
        Assert.Equal(1, runtime.Obj.GetStatistics().LimitRefusals);
        Assert.Equal(1, runtime.Obj.LiveBlocks);

        using IMemoryOwner<byte> fits = pool.Rent(20 * 1024); // what fits is still given
        Assert.Equal(2, runtime.Obj.LiveBlocks);
    }

    [Fact]
    public void An_allocator_out_of_memory_is_an_OutOfMemoryException_not_a_budget_refusal()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        using (NoMemoryScope.Install(runtime, first: 1))
        {
            var ex = Assert.Throws<OutOfMemoryException>(() => runtime.Raw.AsMemoryPool().Rent(100));
            Assert.IsNotType<InsufficientMemoryException>(ex);
            Assert.Contains("raw domain could not allocate a pool buffer of 100 bytes", ex.Message);
        }

        Assert.Equal(0, runtime.Raw.LiveBlocks);
    }

    [Fact]
    public void After_the_runtime_is_disposed_renting_throws_and_a_buffer_rented_before_disposes_quietly()
    {
        RuntimeMemory runtime = RuntimeMemory.Create();
        RuntimeMemoryPool pool = runtime.Obj.AsMemoryPool();
        IMemoryOwner<byte> before = pool.Rent(32);
        runtime.Dispose();

        var ex = Assert.Throws<ObjectDisposedException>(() => pool.Rent(32));
        Assert.Contains("runtime that owns the obj domain has been disposed", ex.Message);
        before.Dispose(); // the closed domain's free does nothing: no exception, nothing touched
        Assert.Throws<ObjectDisposedException>(() => before.Memory);
    }

    [Fact]
    public void The_debug_hooks_report_a_write_past_the_rented_length_when_the_buffer_is_disposed()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Log);
        IMemoryOwner<byte> owner = runtime.Obj.AsMemoryPool().Rent(32);
        using (MemoryHandle pin = owner.Memory.Pin())
        {
            ((byte*)pin.Pointer)[32] = 0x78; // what a native callee handed the pointer might do: one byte past the end
        }

        Assert.Equal(0, runtime.Debugger.Violations);
        owner.Dispose();
        Assert.Equal(1, runtime.Debugger.Violations);
        MemoryViolation violation = runtime.Debugger.LastViolation!;
        Assert.Equal(MemoryViolationKind.BadTrailingPad, violation.Kind);
        Assert.Equal(MemoryDomainKind.Obj, violation.Domain);
        Assert.Equal((nuint)32, violation.RequestedSize);
        Assert.Contains("at tail+0: 0x78 *** OUCH", violation.Report);
        Assert.Equal(1, runtime.Obj.LiveBlocks); // Log leaks the suspect block rather than freeing it

        owner.Dispose(); // disposed once: the block is not offered to the hooks again
        Assert.Equal(1, runtime.Debugger.Violations);
    }

    [Fact]
    public void Under_Throw_the_overrun_surfaces_from_Dispose_and_the_buffer_is_disposed_all_the_same()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Malloc, ViolationAction.Throw);
        IMemoryOwner<byte> owner = runtime.Mem.AsMemoryPool().Rent(48);
        using (MemoryHandle pin = owner.Memory.Pin())
        {
            ((byte*)pin.Pointer)[48] = 0x78;
        }

        var ex = Assert.Throws<MemoryViolationException>(owner.Dispose);
        Assert.Equal(MemoryViolationKind.BadTrailingPad, ex.Violation.Kind);
        owner.Dispose(); // no second report
        Assert.Equal(1, runtime.Debugger.Violations);
        Assert.Throws<ObjectDisposedException>(() => owner.Memory);
    }

    [Fact]
    public void Tracing_sees_a_rented_buffer_with_the_caller_as_its_site()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        runtime.Tracer.Start(frames: 3);
        IMemoryOwner<byte> owner = runtime.Obj.AsMemoryPool().Rent(3000);
        void* block;
        using (MemoryHandle pin = owner.Memory.Pin())
        {
            block = pin.Pointer;
        }

        Runtime.Memory.Tracing.Traceback? traceback = runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, block);
        Assert.NotNull(traceback);
        Assert.Contains(nameof(Tracing_sees_a_rented_buffer_with_the_caller_as_its_site), traceback.MostRecent.Function ?? traceback.MostRecent.File);
        Assert.Equal(3000, runtime.Tracer.GetTracedMemory().Current);

        owner.Dispose();
        Assert.Null(runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, block));
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
    }

    [Fact]
    public void Threads_renting_and_disposing_each_others_buffers_leave_nothing_live()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        RuntimeMemoryPool pool = runtime.Obj.AsMemoryPool();
        const int Threads = 4, PerThread = 20_000;
        var handOff = new ConcurrentQueue<IMemoryOwner<byte>>();
        var failures = new ConcurrentQueue<string>();
        Thread[] threads = new Thread[Threads];
        for (int t = 0; t < Threads; t++)
        {
            int seed = t;
            threads[t] = new Thread(() =>
            {
                var rng = new Random(seed);
                for (int i = 0; i < PerThread; i++)
                {
                    int size = rng.Next(0, 9000);
                    IMemoryOwner<byte> owner = pool.Rent(size);
                    owner.Memory.Span.Fill((byte)seed);
                    if (owner.Memory.Span.IndexOfAnyExcept((byte)seed) >= 0)
                    {
                        failures.Enqueue($"thread {seed}: a buffer changed under it");
                    }

                    handOff.Enqueue(owner);           // disposed by whichever thread dequeues it
                    if (handOff.TryDequeue(out IMemoryOwner<byte>? other))
                    {
                        other.Dispose();
                    }
                }
            });
        }

        foreach (Thread thread in threads)
        {
            thread.Start();
        }

        foreach (Thread thread in threads)
        {
            thread.Join();
        }

        while (handOff.TryDequeue(out IMemoryOwner<byte>? rest))
        {
            rest.Dispose();
        }

        Assert.Empty(failures);
        DomainStatistics stats = runtime.Obj.GetStatistics();
        Assert.Equal(Threads * PerThread, stats.Allocations);
        Assert.Equal(Threads * PerThread, stats.Frees);
        Assert.Equal(0, stats.LiveBlocks);
        Assert.Equal(0, stats.LiveBytes);
    }

    [Fact]
    public void Two_threads_racing_to_dispose_the_same_buffers_free_each_once()
    {
        // Under the debug hooks with Throw a second free of any block would throw (AlreadyFreed) on one of the threads.
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Throw);
        RuntimeMemoryPool pool = runtime.Obj.AsMemoryPool();
        const int Rounds = 20, PerRound = 2_000;
        Exception? thrown = null;
        for (int round = 0; round < Rounds; round++)
        {
            var owners = new IMemoryOwner<byte>[PerRound];
            for (int i = 0; i < PerRound; i++)
            {
                owners[i] = pool.Rent(16 + i % 200);
            }

            using var start = new Barrier(2);
            void DisposeAll()
            {
                start.SignalAndWait();
                try
                {
                    foreach (IMemoryOwner<byte> owner in owners)
                    {
                        owner.Dispose();
                    }
                }
                catch (Exception ex)
                {
                    thrown = ex;
                }
            }

            var other = new Thread(DisposeAll);
            other.Start();
            DisposeAll();
            other.Join();
        }

        Assert.Null(thrown);
        Assert.Equal(0, runtime.Debugger.Violations);
        DomainStatistics stats = runtime.Obj.GetStatistics();
        Assert.Equal(Rounds * PerRound, stats.Frees);
        Assert.Equal(0, stats.LiveBlocks);
    }

    [Fact]
    public void AsMemoryPool_gives_one_pool_per_domain_whose_dispose_does_nothing()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        using RuntimeMemory other = RuntimeMemory.Create();
        RuntimeMemoryPool obj = runtime.Obj.AsMemoryPool();
        Assert.Same(obj, runtime.Obj.AsMemoryPool());
        Assert.NotSame(obj, runtime.Mem.AsMemoryPool());
        Assert.NotSame(obj, other.Obj.AsMemoryPool());
        Assert.Same(runtime.Obj, obj.Domain);

        obj.Dispose();
        using IMemoryOwner<byte> stillRents = obj.Rent(8);
        Assert.Equal(1, runtime.Obj.LiveBlocks);
    }

    [Fact]
    public void A_pool_made_with_new_refuses_to_rent_once_disposed_but_its_buffers_stay_valid()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        var pool = new RuntimeMemoryPool(runtime.Raw);
        IMemoryOwner<byte> owner = pool.Rent(100);
        pool.Dispose();

        Assert.Throws<ObjectDisposedException>(() => pool.Rent(100));
        owner.Memory.Span.Fill(1);
        Assert.Equal(1, runtime.Raw.LiveBlocks);
        owner.Dispose();
        Assert.Equal(0, runtime.Raw.LiveBlocks);
    }

    [Fact]
    public void Dependency_injection_builds_a_pool_over_the_obj_domain()
    {
        var services = new ServiceCollection();
        services.AddRuntimeMemory();
        services.AddSingleton<MemoryPool<byte>, RuntimeMemoryPool>();
        using ServiceProvider provider = services.BuildServiceProvider();
        IRuntimeMemory memory = provider.GetRequiredService<IRuntimeMemory>();
        MemoryPool<byte> pool = provider.GetRequiredService<MemoryPool<byte>>();

        Assert.Same(memory.Obj, Assert.IsType<RuntimeMemoryPool>(pool).Domain);
        using (pool.Rent(256))
        {
            Assert.Equal(1, memory.Obj.LiveBlocks);
        }

        Assert.Equal(0, memory.Obj.LiveBlocks);
    }
}
