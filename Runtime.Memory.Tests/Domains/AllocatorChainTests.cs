using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Domains;

/// <summary>Get / set of each domain's allocator and the hook chain (PEP 445 use case 3, and design decision 4).</summary>
public sealed unsafe class AllocatorChainTests
{
    /// <summary>A hook that adds a header, as debug guard bytes will: blocks it returns cannot be freed without it.</summary>
    private sealed class HeaderHook : MemoryHook
    {
        public override string Name => "header";

        public override bool ChangesBlockLayout => true;

        public override void* Malloc(nuint size)
        {
            byte* p = (byte*)Inner.Malloc(size + 16);
            return p == null ? null : p + 16;
        }

        public override void* Calloc(nuint count, nuint size) => Malloc(count * size);

        public override void* Realloc(void* ptr, nuint newSize)
        {
            byte* p = (byte*)Inner.Realloc((byte*)ptr - 16, newSize + 16);
            return p == null ? null : p + 16;
        }

        public override void Free(void* ptr) => Inner.Free((byte*)ptr - 16);

        public override nuint BlockSize(void* ptr) => Inner.BlockSize((byte*)ptr - 16) - 16;
    }

    /// <summary>A replacement base allocator: the system allocator under another name.</summary>
    private sealed class OtherAllocator : MemoryAllocator
    {
        private readonly SystemAllocator _system = new();

        public override string Name => "other";

        public override void* Malloc(nuint size) => _system.Malloc(size);

        public override void* Calloc(nuint count, nuint size) => _system.Calloc(count, size);

        public override void* Realloc(void* ptr, nuint newSize) => _system.Realloc(ptr, newSize);

        public override void Free(void* ptr) => _system.Free(ptr);

        public override nuint BlockSize(void* ptr) => _system.BlockSize(ptr);
    }

    [Theory, ClassData(typeof(AllDomains))]
    public void On_malloc_every_domain_starts_on_the_system_allocator(MemoryDomainKind kind)
    {
        MemoryDomain domain = TestRuntimes.Create(AllocatorNames.Malloc)[kind];
        Assert.IsType<SystemAllocator>(domain.Allocator);
        Assert.Same(domain.Allocator, domain.BaseAllocator);
        Assert.Equal("malloc", domain.DescribeChain());
    }

    [Theory]
    [InlineData(AllocatorNames.Default)]
    [InlineData(AllocatorNames.Pymalloc)]
    public void On_default_and_pymalloc_mem_and_obj_start_on_the_small_object_allocator_and_raw_on_malloc(string allocator)
    {
        RuntimeMemory runtime = TestRuntimes.Create(allocator);
        Assert.IsType<SystemAllocator>(runtime.Raw.Allocator);
        SmallObjectAllocator mem = Assert.IsType<SmallObjectAllocator>(runtime.Mem.Allocator);
        SmallObjectAllocator obj = Assert.IsType<SmallObjectAllocator>(runtime.Obj.Allocator);
        Assert.NotSame(mem, obj); // the domains share no arenas
        Assert.Equal("pymalloc", runtime.Obj.DescribeChain());
        Assert.Same(obj, runtime.SmallObjects(MemoryDomainKind.Obj));
        Assert.Null(runtime.SmallObjects(MemoryDomainKind.Raw));
    }

    [Theory, ClassData(typeof(AllDomains))]
    public void Installing_a_hook_wraps_the_allocator_it_finds_and_removing_it_restores_exactly_that(MemoryDomainKind kind)
    {
        MemoryDomain domain = TestRuntimes.Create()[kind];
        MemoryAllocator before = domain.Allocator;
        var hook = new RecordingAllocator();

        domain.InstallHook(hook);
        Assert.Same(hook, domain.Allocator);
        Assert.Same(before, hook.Inner);
        Assert.Same(domain, hook.Domain);

        Assert.True(domain.RemoveHook(hook));
        Assert.Same(before, domain.Allocator);
        Assert.Null(hook.Domain);
        Assert.False(domain.RemoveHook(hook));
    }

    [Theory, ClassData(typeof(AllDomains))]
    public void Get_wrap_set_then_set_the_saved_allocator_restores_it(MemoryDomainKind kind)
    {
        // PEP 445 use case 3: save with Get, install a hook over it with Set, later Set the saved allocator back.
        MemoryDomain domain = TestRuntimes.Create()[kind];
        MemoryAllocator saved = domain.Allocator;
        var hook = new RecordingAllocator(saved);
        domain.SetAllocator(hook);
        Assert.Same(hook, domain.Allocator);

        void* p = domain.Malloc(10);
        domain.Free(p);
        Assert.Equal(2, hook.Count);

        domain.SetAllocator(saved);
        Assert.Same(saved, domain.Allocator);
        Assert.Equal(["malloc"], domain.GetChain().Select(a => a.Name));
    }

    [Fact]
    public void Hooks_receive_the_exact_arguments_of_each_call()
    {
        // CPython's test_setallocators: same size (42), calloc (2, 5), realloc pointer and new size (200), free pointer.
        MemoryDomain domain = TestRuntimes.Create().Mem;
        var hook = new RecordingAllocator();
        domain.InstallHook(hook);

        void* p = domain.Malloc(42);
        void* c = domain.Calloc(2, 5);
        void* r = domain.Realloc(p, 200);
        domain.Free(r);
        domain.Free(c);

        RecordedCall[] calls = [.. hook.GetSnapshot()];
        Assert.Equal(5, calls.Length);
        Assert.Equal((AllocatorOperation.Malloc, (nuint)42, (nint)p), (calls[0].Operation, calls[0].Size, calls[0].Result));
        Assert.Equal((AllocatorOperation.Calloc, (nuint)2, (nuint)5, (nint)c), (calls[1].Operation, calls[1].Count, calls[1].Size, calls[1].Result));
        Assert.Equal((AllocatorOperation.Realloc, (nint)p, (nuint)200, (nint)r), (calls[2].Operation, calls[2].Pointer, calls[2].Size, calls[2].Result));
        Assert.Equal((AllocatorOperation.Free, (nint)r), (calls[3].Operation, calls[3].Pointer));
        Assert.Equal((AllocatorOperation.Free, (nint)c), (calls[4].Operation, calls[4].Pointer));
        Assert.Equal([1L, 2, 3, 4, 5], calls.Select(x => x.Sequence));
    }

    [Fact]
    public void Hooks_stack_and_calls_flow_from_the_top_down()
    {
        MemoryDomain domain = TestRuntimes.Create().Obj;
        var lower = new RecordingAllocator();
        var upper = new FailingAllocator();
        domain.InstallHook(lower);
        domain.InstallHook(upper);
        Assert.Equal(["failing", "recording", "malloc"], domain.GetChain().Select(a => a.Name));

        upper.FailOnly(1);
        Assert.True(domain.Malloc(8) == null); // stopped at the top: the lower hook never saw it
        Assert.Equal(0, lower.Count);

        void* p = domain.Malloc(8);
        domain.Free(p);
        Assert.Equal(2, lower.Count);
    }

    [Fact]
    public void Removing_a_hook_from_the_middle_relinks_the_one_above_it()
    {
        MemoryDomain domain = TestRuntimes.Create().Obj;
        var bottom = new RecordingAllocator();
        var middle = new FailingAllocator();
        var top = new RecordingAllocator();
        domain.InstallHook(bottom);
        domain.InstallHook(middle);
        domain.InstallHook(top);

        Assert.True(domain.RemoveHook(middle));

        Assert.Same(bottom, top.Inner);
        Assert.Equal([top, bottom, domain.BaseAllocator], domain.GetChain());
        void* p = domain.Malloc(24);
        domain.Free(p);
        Assert.Equal((2, 2), (top.Count, bottom.Count));
    }

    [Fact]
    public void Setting_an_allocator_lower_in_the_chain_unlinks_every_hook_above_it()
    {
        MemoryDomain domain = TestRuntimes.Create().Raw;
        MemoryAllocator saved = domain.Allocator;
        var first = new RecordingAllocator();
        var second = new RecordingAllocator();
        domain.InstallHook(first);
        domain.InstallHook(second);

        domain.SetAllocator(saved);

        Assert.Same(saved, domain.Allocator);
        Assert.Null(first.Domain);
        Assert.Null(second.Domain);
    }

    [Theory, ClassData(typeof(AllDomains))]
    public void Replacing_the_base_allocator_while_blocks_are_live_is_refused(MemoryDomainKind kind)
    {
        MemoryDomain domain = TestRuntimes.Create()[kind];
        MemoryAllocator before = domain.Allocator;
        void* p = domain.Malloc(100);

        var error = Assert.Throws<InvalidOperationException>(() => domain.SetAllocator(new OtherAllocator()));

        Assert.Contains($"{kind.ToName()} domain", error.Message);
        Assert.Contains("'other'", error.Message);
        Assert.Contains("1 live blocks (100 bytes)", error.Message);
        Assert.Contains("wrap", error.Message);
        Assert.Same(before, domain.Allocator);
        domain.Free(p);
    }

    [Theory, ClassData(typeof(AllDomains))]
    public void Replacing_the_base_allocator_with_no_live_blocks_is_allowed(MemoryDomainKind kind)
    {
        MemoryDomain domain = TestRuntimes.Create()[kind];
        domain.Free(domain.Malloc(100));
        var other = new OtherAllocator();

        domain.SetAllocator(other);

        Assert.Same(other, domain.Allocator);
        Assert.Same(other, domain.BaseAllocator);
        void* p = domain.Malloc(7);
        Assert.Equal(7, domain.GetStatistics().LiveBytes);
        domain.Free(p);
    }

    [Fact]
    public void Wrapping_is_allowed_while_blocks_are_live_and_old_blocks_free_through_the_hook()
    {
        MemoryDomain domain = TestRuntimes.Create().Mem;
        void* early = domain.Malloc(50);
        var hook = new RecordingAllocator();

        domain.InstallHook(hook);
        domain.Free(early);

        Assert.Equal(AllocatorOperation.Free, Assert.Single(hook.GetSnapshot()).Operation);
        MemoryAssert.NoLiveBlocks(domain);
    }

    [Fact]
    public void A_hook_that_changes_the_block_layout_cannot_be_removed_while_blocks_are_live()
    {
        MemoryDomain domain = TestRuntimes.Create().Obj;
        var hook = new HeaderHook();
        domain.InstallHook(hook);
        void* p = domain.Malloc(64);
        Assert.Equal(64, domain.GetStatistics().LiveBytes);

        var error = Assert.Throws<InvalidOperationException>(() => domain.RemoveHook(hook));
        Assert.Contains("'header'", error.Message);
        Assert.Throws<InvalidOperationException>(() => domain.SetAllocator(hook.Inner));
        Assert.Same(hook, domain.Allocator);

        domain.Free(p);
        Assert.True(domain.RemoveHook(hook));
        Assert.IsType<SystemAllocator>(domain.Allocator);
    }

    [Fact]
    public void A_hook_instance_sits_in_one_domain_at_a_time()
    {
        RuntimeMemory runtime = TestRuntimes.Create();
        var hook = new RecordingAllocator();
        runtime.Mem.InstallHook(hook);

        var twice = Assert.Throws<ArgumentException>(() => runtime.Mem.InstallHook(hook));
        Assert.Contains("already installed in the mem domain", twice.Message);
        Assert.Throws<ArgumentException>(() => runtime.Obj.InstallHook(hook));

        runtime.Mem.RemoveHook(hook);
        runtime.Obj.InstallHook(hook); // free to move once removed
        Assert.Same(runtime.Obj.BaseAllocator, hook.Inner);
    }

    [Fact]
    public void A_replacement_chain_holding_a_hook_of_another_domain_is_refused_and_nothing_changes()
    {
        RuntimeMemory runtime = TestRuntimes.Create();
        var elsewhere = new RecordingAllocator();
        runtime.Raw.InstallHook(elsewhere);
        var mine = new RecordingAllocator();
        runtime.Obj.InstallHook(mine);
        var replacement = new FailingAllocator(elsewhere); // its inner hook sits in raw

        var error = Assert.Throws<ArgumentException>(() => runtime.Obj.SetAllocator(replacement));

        Assert.Contains("installed in the raw domain", error.Message);
        Assert.Same(mine, runtime.Obj.Allocator);
        Assert.Same(runtime.Obj, mine.Domain);
        Assert.Same(runtime.Raw, elsewhere.Domain);
    }

    [Fact]
    public void A_replacement_chain_of_hooks_is_adopted_whole()
    {
        MemoryDomain domain = TestRuntimes.Create().Mem;
        var bottom = new OtherAllocator();
        var hook = new RecordingAllocator(bottom);

        domain.SetAllocator(hook);

        Assert.Same(hook, domain.Allocator);
        Assert.Same(bottom, domain.BaseAllocator);
        Assert.Same(domain, hook.Domain);
        Assert.Equal("recording > other", domain.DescribeChain());
    }

    [Fact]
    public void Two_threads_installing_one_hook_into_two_domains_at_once_never_both_succeed()
    {
        for (int round = 0; round < 200; round++)
        {
            RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Malloc);
            var hook = new RecordingAllocator();
            using var start = new Barrier(2);
            bool rawWon = false, objWon = false;
            void InstallInto(MemoryDomain domain, ref bool won)
            {
                start.SignalAndWait();
                try
                {
                    domain.InstallHook(hook);
                    won = true;
                }
                catch (ArgumentException)
                {
                }
            }

            var t1 = new Thread(() => InstallInto(runtime.Raw, ref rawWon));
            var t2 = new Thread(() => InstallInto(runtime.Obj, ref objWon));
            t1.Start();
            t2.Start();
            t1.Join();
            t2.Join();
            Assert.True(rawWon ^ objWon, "exactly one install must win");

            MemoryDomain winner = rawWon ? runtime.Raw : runtime.Obj;
            MemoryDomain loser = rawWon ? runtime.Obj : runtime.Raw;
            Assert.Same(winner, hook.Domain);
            Assert.Same(hook, winner.Allocator);
            Assert.IsType<SystemAllocator>(loser.Allocator);
        }
    }

    [Fact]
    public void Installing_an_unbound_hook_with_set_allocator_wraps_the_current_allocator()
    {
        MemoryDomain domain = TestRuntimes.Create().Raw;
        MemoryAllocator before = domain.Allocator;
        var hook = new RecordingAllocator();
        domain.SetAllocator(hook);
        Assert.Same(before, hook.Inner);
    }

    [Fact]
    public void A_hook_used_before_it_is_bound_reports_a_clear_error()
    {
        var hook = new RecordingAllocator();
        var error = Assert.Throws<InvalidOperationException>(() => hook.Inner);
        Assert.Contains("not bound", error.Message);
    }

    [Fact]
    public void Hooks_can_be_installed_and_removed_while_other_threads_allocate()
    {
        RuntimeMemory runtime = TestRuntimes.Create();
        MemoryAllocator[] before = [.. MemoryDomainKindExtensions.All.ToArray().Select(k => runtime[k].Allocator)];
        using var stop = new CancellationTokenSource();
        const int Workers = 3;

        var workers = Enumerable.Range(0, Workers).Select(w => Task.Run(() =>
        {
            long operations = 0;
            while (!stop.IsCancellationRequested || operations < 10_000)
            {
                MemoryDomain domain = runtime[(MemoryDomainKind)(operations % 3)];
                byte* p = (byte*)domain.Malloc((nuint)(1 + (operations % 200)));
                if (p == null)
                {
                    throw new InvalidOperationException("allocation failed while hooks were changing");
                }

                p[0] = 1;
                domain.Free(p);
                operations++;
            }

            return operations;
        })).ToArray();

        for (int round = 0; round < 500; round++)
        {
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                var hook = new RecordingAllocator();
                runtime[kind].InstallHook(hook);
                Assert.Same(hook, runtime[kind].Allocator);
                Assert.True(runtime[kind].RemoveHook(hook));
            }
        }

        stop.Cancel();
        long total = workers.Sum(w => w.GetAwaiter().GetResult());

        Assert.Equal(before, MemoryDomainKindExtensions.All.ToArray().Select(k => runtime[k].Allocator));
        RuntimeMemoryStatistics s = runtime.GetStatistics();
        Assert.Equal(0, s.LiveBlocks);
        Assert.Equal(total, s.Domains.Sum(d => d.Allocations));
    }
}
