using System.Buffers.Binary;
using Runtime.Memory.Hosting;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Debugging;

/// <summary>What the debug hooks write into blocks, how they stack, and that they keep every domain guarantee.</summary>
public sealed unsafe class DebugHookTests
{
    private static ulong BigEndian(byte* p) => BinaryPrimitives.ReadUInt64BigEndian(new ReadOnlySpan<byte>(p, 8));

    /// <summary>The serial field: a check byte (0xFD xor the other seven), then the number in 7 bytes, big-endian.</summary>
    private static ulong Serial(byte* field)
    {
        ulong value = BigEndian(field);
        ulong number = value & ((1UL << 56) - 1);
        byte check = 0xFD;
        for (int i = 1; i < 8; i++)
        {
            check ^= field[i];
        }

        Assert.Equal(check, field[0]);
        return number;
    }

    private static bool All(byte* p, int length, byte value) => new ReadOnlySpan<byte>(p, length).IndexOfAnyExcept(value) < 0;

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void Malloc_lays_out_size_id_pads_clean_data_and_serial_as_cpython_does(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        MemoryDomain domain = runtime[kind];
        byte* first = (byte*)domain.Malloc(5);
        byte* p = (byte*)domain.Malloc(37);

        Assert.Equal(37UL, BigEndian(p - 16));                        // size, big-endian, at p-16
        Assert.Equal(kind.ToApiId(), p[-8]);                          // API id
        Assert.True(All(p - 7, 7, 0xFD), "leading pad");              // 7 forbidden bytes
        Assert.True(All(p, 37, 0xCD), "new data is CLEANBYTE");
        Assert.True(All(p + 37, 8, 0xFD), "trailing pad");
        Assert.Equal(2UL, Serial(p + 37 + 8));                        // made by call #2
        Assert.Equal(1UL, Serial(first + 5 + 8));
        Assert.Equal(2UL, runtime.Debugger.Calls);

        domain.Free(first);
        domain.Free(p);
        Assert.Equal(0, runtime.Debugger.LiveBlocks);
        Assert.Equal(0, domain.LiveBlocks);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void Calloc_data_is_zero_not_cleanbyte_and_the_guards_are_in_place(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        MemoryDomain domain = runtime[kind];
        byte* p = (byte*)domain.Calloc(3, 7);
        Assert.True(All(p, 21, 0), "calloc data is zero");
        Assert.Equal(21UL, BigEndian(p - 16));
        Assert.True(All(p + 21, 8, 0xFD), "trailing pad");
        domain.Free(p);
        Assert.Equal(0, domain.LiveBlocks);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void Every_block_stays_16_byte_aligned_and_distinct(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        MemoryDomain domain = runtime[kind];
        var blocks = new HashSet<nint>();
        for (nuint size = 0; size <= 600; size += 7)
        {
            void* p = domain.Malloc(size);
            Assert.True(Blocks.IsAligned(p), $"malloc({size})");
            Assert.True(blocks.Add((nint)p));
            void* q = domain.Calloc(1, size);
            Assert.True(Blocks.IsAligned(q), $"calloc({size})");
            Assert.True(blocks.Add((nint)q));
        }

        foreach (nint p in blocks)
        {
            domain.Free((void*)p);
        }

        Assert.Equal(0, domain.LiveBlocks);
    }

    [Fact]
    public void Free_fills_the_whole_block_guards_included_with_deadbyte()
    {
        using var keep = new KeepFreedAllocator();
        using var runtime = new RuntimeMemory(new FactoryProvider("keep", _ => keep), new RuntimeMemoryOptions
        {
            Allocator = AllocatorNames.Debug,
            Debug = { OnViolation = ViolationAction.Throw },
        });
        byte* p = (byte*)runtime.Mem.Malloc(24);
        runtime.Mem.Free(p);
        Assert.False(keep.WasFreed(p - 16)); // held in the quarantine, not given back
        Assert.Equal(24 + 32, runtime.Debugger.QuarantinedBytes);
        Assert.True(All(p - 16, 16 + 24 + 16, 0xDD), "header, data, pad and serial are DEADBYTE");
        Assert.Equal(0, runtime.Debugger.FlushQuarantine()); // intact: checked, then given back
        Assert.True(keep.WasFreed(p - 16));
        Assert.Equal(0, runtime.Debugger.QuarantinedBytes);
        Assert.True(All(p - 16, 16 + 24 + 16, 0xDD), "still DEADBYTE after the check");
    }

    [Fact]
    public void Realloc_moves_keeps_the_data_marks_growth_clean_and_the_old_block_dead()
    {
        using var keep = new KeepFreedAllocator();
        using var runtime = new RuntimeMemory(new FactoryProvider("keep", _ => keep), new RuntimeMemoryOptions
        {
            Allocator = AllocatorNames.Debug,
            Debug = { OnViolation = ViolationAction.Throw },
        });
        byte* p = (byte*)runtime.Obj.Malloc(10);
        Blocks.Fill(p, 10, 1);

        byte* grown = (byte*)runtime.Obj.Realloc(p, 30);
        Assert.True(grown != p, "realloc always moves under the debug hooks");
        Assert.True(Blocks.Holds(grown, 10, 1), "the data is kept");
        Assert.True(All(grown + 10, 20, 0xCD), "the grown part is CLEANBYTE");
        Assert.Equal(30UL, BigEndian(grown - 16));
        Assert.Equal(2UL, Serial(grown + 30 + 8)); // a realloc is a numbered call, as in CPython
        Assert.True(All(p - 16, 16 + 10 + 16, 0xDD), "the moved-from block is DEADBYTE");

        byte* shrunk = (byte*)runtime.Obj.Realloc(grown, 4);
        Assert.True(Blocks.Holds(shrunk, 4, 1));
        Assert.True(All(shrunk + 4, 8, 0xFD));
        Assert.True(All(grown - 16, 16 + 30 + 16, 0xDD));

        runtime.Obj.Free(shrunk);
        Assert.Equal(0, runtime.Obj.LiveBlocks);
        Assert.Equal(0, runtime.GetStatistics().LiveBytes);
    }

    [Theory]
    [ClassData(typeof(AllDomains))]
    public void A_failed_realloc_returns_null_and_leaves_the_block_valid(MemoryDomainKind kind)
    {
        // The allocator below the debug hooks fails on request.
        var failing = new FailingAllocator(new SystemAllocator());
        using var runtime = new RuntimeMemory(
            new FactoryProvider("failing", k => k == kind ? failing : new SystemAllocator()),
            new RuntimeMemoryOptions { Allocator = AllocatorNames.Debug, Debug = { OnViolation = ViolationAction.Throw } });
        MemoryDomain domain = runtime[kind];
        byte* p = (byte*)domain.Malloc(16);
        Blocks.Fill(p, 16, 9);

        failing.FailFrom(1);
        Assert.True(domain.Realloc(p, 4000) == null);
        Assert.True(domain.Malloc(1) == null);
        failing.FailNever();

        Assert.True(Blocks.Holds(p, 16, 9), "the old block is unchanged");
        Assert.True(All(p + 16, 8, 0xFD), "and its guard bytes intact");
        byte* q = (byte*)domain.Realloc(p, 32);
        Assert.True(Blocks.Holds(q, 16, 9));
        domain.Free(q);
        Assert.Equal(0, runtime.Debugger.Violations);
        Assert.Equal(0, domain.LiveBlocks);
        Assert.Equal(2, domain.GetStatistics().Failures);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void Sizes_the_layout_cannot_represent_return_null(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        MemoryDomain domain = runtime[kind];
        Assert.True(domain.Malloc(MemoryDomain.MaxRequestSize) == null);
        Assert.True(domain.Malloc(MemoryDomain.MaxRequestSize - 31) == null);
        Assert.True(domain.Calloc(nuint.MaxValue, 2) == null);
        Assert.True(domain.Calloc(1, MemoryDomain.MaxRequestSize - 20) == null);
        void* p = domain.Malloc(8);
        Assert.True(domain.Realloc(p, MemoryDomain.MaxRequestSize - 1) == null);
        domain.Free(p);
        Assert.Equal(0, runtime.Debugger.Violations);
        Assert.Equal(0, domain.LiveBlocks);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void Accounting_counts_the_bytes_requested_as_without_the_hooks(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        MemoryDomain domain = runtime[kind];
        void* a = domain.Malloc(100);
        void* b = domain.Calloc(4, 25);
        b = domain.Realloc(b, 300);
        DomainStatistics stats = domain.GetStatistics();
        Assert.Equal(2, stats.LiveBlocks);
        Assert.Equal(400, stats.LiveBytes);
        domain.Free(a);
        domain.Free(b);
        Assert.Equal(0, domain.GetStatistics().LiveBytes);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void Setting_up_the_hooks_again_does_nothing_even_under_another_hook(string allocator)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        DebugHook hook = runtime.Mem.DebugHook!;
        var tracing = new RecordingAllocator();
        runtime.Mem.InstallHook(tracing);
        string chain = runtime.Mem.DescribeChain();
        Assert.Equal($"recording > debug > {allocator}", chain);

        runtime.SetupDebugHooks();
        Assert.Same(hook, runtime.Mem.SetupDebugHooks());
        Assert.Equal(chain, runtime.Mem.DescribeChain());

        // The chain still works end to end (CPython's equivalent recurses forever here).
        byte* p = (byte*)runtime.Mem.Malloc(16);
        Assert.True(All(p, 16, 0xCD));
        runtime.Mem.Free(p);
        Assert.Equal(2, tracing.Count);
        Assert.Equal(0, runtime.Debugger.Violations);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void Hooks_set_up_over_live_blocks_pass_those_through_and_check_every_new_one(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = TestRuntimes.Create(allocator);
        runtime.Debugger.OnViolation = ViolationAction.Throw;
        MemoryDomain domain = runtime[kind];
        byte* early = (byte*)domain.Malloc(40);
        byte* early2 = (byte*)domain.Malloc(50);
        Blocks.Fill(early2, 50, 3);

        DebugHook hook = domain.SetupDebugHooks();
        Assert.Equal(2, hook.AdoptedBlocks);
        byte* late = (byte*)domain.Malloc(40);
        Assert.Equal(40UL, BigEndian(late - 16));

        domain.Free(early);                                 // passed to the allocator below, unchecked
        byte* moved = (byte*)domain.Realloc(early2, 500);   // resized by the allocator below
        Assert.True(Blocks.Holds(moved, 50, 3));
        domain.Free(moved);
        Assert.Equal(0, hook.AdoptedBlocks);
        domain.Free(late);
        Assert.Equal(0, domain.GetStatistics().LiveBlocks);
        Assert.Equal(0, domain.GetStatistics().LiveBytes);

        // With the adopted blocks gone, every unknown pointer is reported.
        byte* stray = stackalloc byte[32];
        Assert.Equal(MemoryViolationKind.UnknownPointer, DebugRuntimes.Catch(() => domain.Free(stray + 16)).Kind);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void The_hooks_cannot_be_removed_while_their_blocks_are_live(string allocator)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        void* p = runtime.Obj.Malloc(8);
        var error = Assert.Throws<InvalidOperationException>(() => runtime.Obj.RemoveHook(runtime.Obj.DebugHook!));
        Assert.Contains("changes the block layout", error.Message);
        runtime.Obj.Free(p);
        Assert.True(runtime.Obj.RemoveHook(runtime.Obj.DebugHook!));
        Assert.Null(runtime.Obj.DebugHook);
        Assert.Equal(allocator, runtime.Obj.DescribeChain());
    }

    [Theory]
    [InlineData(AllocatorNames.Debug, "debug > pymalloc", "debug > malloc")]
    [InlineData(AllocatorNames.MallocDebug, "debug > malloc", "debug > malloc")]
    [InlineData(AllocatorNames.PymallocDebug, "debug > pymalloc", "debug > malloc")]
    public void Debug_allocator_names_install_the_hooks_over_their_base(string name, string memChain, string rawChain)
    {
        using RuntimeMemory runtime = RuntimeMemory.Create(new RuntimeMemoryOptions { Allocator = name });
        Assert.Equal(name, runtime.AllocatorName);
        Assert.Equal(rawChain, runtime.Raw.DescribeChain());
        Assert.Equal(memChain, runtime.Mem.DescribeChain());
        Assert.Equal(memChain, runtime.Obj.DescribeChain());
        Assert.Equal(ViolationAction.FailFast, runtime.Debugger.OnViolation);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void Threads_freeing_each_others_blocks_see_no_violation_and_exact_accounting(string allocator)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        const int Threads = 4, PerThread = 20_000;
        var queues = Enumerable.Range(0, Threads).Select(_ => new System.Collections.Concurrent.BlockingCollection<nint>()).ToArray();
        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var random = new Random(t);
            MemoryDomain domain = runtime[(MemoryDomainKind)(t % 3)];
            for (int i = 0; i < PerThread; i++)
            {
                nuint size = (nuint)random.Next(0, 700);
                byte* p = (byte*)domain.Malloc(size);
                Blocks.Fill(p, size, (byte)i);
                p = (byte*)domain.Realloc(p, size + 1);
                Assert.True(Blocks.Holds(p, size, (byte)i));
                queues[(t + 1) % Threads].Add((nint)p); // the next thread (same domain family) frees it
            }

            queues[(t + 1) % Threads].CompleteAdding();
        })).ToList();

        // Frees happen on other threads, through the domain that allocated each block.
        var freers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            MemoryDomain domain = runtime[(MemoryDomainKind)(((t + Threads - 1) % Threads) % 3)];
            foreach (nint p in queues[t].GetConsumingEnumerable())
            {
                domain.Free((void*)p);
            }
        })).ToList();

        workers.Concat(freers).ToList().ForEach(th => th.Start());
        workers.Concat(freers).ToList().ForEach(th => th.Join());

        Assert.Equal(0, runtime.Debugger.Violations);
        Assert.Equal(0, runtime.Debugger.LiveBlocks);
        Assert.Equal(0, runtime.GetStatistics().LiveBlocks);
        Assert.Equal(0, runtime.GetStatistics().LiveBytes);
    }

    [Fact]
    public void Two_threads_freeing_the_same_block_report_exactly_one_double_free()
    {
        for (int round = 0; round < 200; round++)
        {
            using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Log);
            void* p = runtime.Obj.Malloc(16);
            using var start = new Barrier(2);
            var threads = Enumerable.Range(0, 2).Select(_ => new Thread(() =>
            {
                start.SignalAndWait();
                runtime.Obj.Free(p);
            })).ToList();
            threads.ForEach(t => t.Start());
            threads.ForEach(t => t.Join());

            Assert.Equal(1, runtime.Debugger.Violations);
            Assert.Equal(MemoryViolationKind.AlreadyFreed, runtime.Debugger.LastViolation!.Kind);
            Assert.Equal(0, runtime.Obj.LiveBlocks);
        }
    }
}
