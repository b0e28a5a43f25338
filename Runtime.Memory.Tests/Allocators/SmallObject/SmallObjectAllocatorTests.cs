using System.Collections.Concurrent;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Allocators.SmallObject;

/// <summary>The small-object allocator on its own: classes, pools, arenas, threads, ownership and its report.</summary>
public sealed unsafe class SmallObjectAllocatorTests
{
    /// <summary>Every arena, pool, free list and heap list satisfies its invariants (the allocator's own walker).</summary>
    private static void AssertHealthy(SmallObjectAllocator allocator) => Assert.Empty(allocator.CheckInvariants());

    /// <summary>An arena allocator that counts what it hands out, over the OS one (or an unaligned variant).</summary>
    private sealed class CountingArenaAllocator(bool misalign = false) : ArenaAllocator
    {
        public int Allocated;
        public int Freed;

        public override string Name => "counting";

        public override void* Alloc(nuint size)
        {
            Interlocked.Increment(ref Allocated);
            if (!misalign)
            {
                return OsArenaAllocator.Instance.Alloc(size);
            }

            // Deliberately 4 KiB past an arena boundary: the allocator must cope by losing one pool.
            byte* p = (byte*)OsArenaAllocator.Instance.Alloc(size * 2);
            return p == null ? null : p + 4096;
        }

        public override void Free(void* ptr, nuint size)
        {
            Interlocked.Increment(ref Freed);
            OsArenaAllocator.Instance.Free(misalign ? (byte*)ptr - 4096 : ptr, misalign ? size * 2 : size);
        }
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(16, 16)]
    [InlineData(17, 32)]
    [InlineData(500, 512)]
    [InlineData(512, 512)]
    [InlineData(0, 16)]
    public void Requests_up_to_512_bytes_get_the_next_multiple_of_16(int size, int blockSize)
    {
        using var allocator = new SmallObjectAllocator();
        void* p = allocator.Malloc((nuint)size);
        Assert.Equal((nuint)blockSize, allocator.BlockSize(p));
        Assert.Equal(1, allocator.GetStatistics().Classes[(blockSize / 16) - 1].BlocksInUse);
        allocator.Free(p);
    }

    [Fact]
    public void Requests_above_512_bytes_go_to_the_system_allocator()
    {
        using var allocator = new SmallObjectAllocator();
        void* p = allocator.Malloc(513);
        Assert.Equal((nuint)513, allocator.BlockSize(p)); // the system allocator's exact size
        Assert.Equal(0, allocator.GetStatistics().ArenasCurrent);
        allocator.Free(p);
    }

    [Fact]
    public void Foreign_pointers_are_recognised_without_touching_them_and_freed_by_the_system_allocator()
    {
        using var allocator = new SmallObjectAllocator();
        var system = new SystemAllocator();
        void* small = allocator.Malloc(32); // so the allocator has an arena and a map
        void* foreign = system.Malloc(32);

        Assert.Equal((nuint)32, allocator.BlockSize(foreign));
        allocator.Free(foreign); // goes to the system allocator: no crash, no pool corruption
        allocator.Free(small);
        Assert.Equal(0, allocator.GetStatistics().BlocksInUse);
    }

    [Fact]
    public void Blocks_come_from_one_pool_until_it_is_full_then_from_a_new_one()
    {
        using var allocator = new SmallObjectAllocator();
        int perPool = allocator.GetStatistics().Classes.Count > 0 ? (16384 - Runtime.Memory.Allocators.SmallObject.SizeClasses.PoolOverhead) / 64 : 0;
        var blocks = new List<nint>();
        for (int i = 0; i < perPool + 1; i++)
        {
            blocks.Add((nint)allocator.Malloc(64));
        }

        SizeClassStatistics class64 = allocator.GetStatistics().Classes[3];
        Assert.Equal((2L, perPool + 1L, perPool - 1L), (class64.Pools, class64.BlocksInUse, class64.AvailableBlocks));
        Assert.Equal(blocks.Count, blocks.Distinct().Count());
        foreach (nint p in blocks)
        {
            allocator.Free((void*)p);
        }
    }

    [Fact]
    public void Realloc_stays_in_place_when_the_new_size_wastes_little_and_moves_otherwise()
    {
        using var allocator = new SmallObjectAllocator();
        byte* p = (byte*)allocator.Malloc(400); // class 400
        Blocks.Fill(p, 400, 1);

        Assert.True(allocator.Realloc(p, 390) == p);  // same class
        Assert.True(allocator.Realloc(p, 301) == p);  // 4 × 301 > 3 × 400: wastes under a quarter
        byte* moved = (byte*)allocator.Realloc(p, 200); // wastes half: moves to class 208
        Assert.True(moved != p);
        Assert.Equal((nuint)208, allocator.BlockSize(moved));
        Assert.True(Blocks.Holds(moved, 200, 1));

        byte* large = (byte*)allocator.Realloc(moved, 5000); // grows out of the pools
        Assert.Equal((nuint)5000, allocator.BlockSize(large));
        Assert.True(Blocks.Holds(large, 200, 1));
        byte* stillLarge = (byte*)allocator.Realloc(large, 100); // a large block never moves into the pools
        Assert.Equal((nuint)100, allocator.BlockSize(stillLarge));
        allocator.Free(stillLarge);
        Assert.Equal(0, allocator.GetStatistics().BlocksInUse);
    }

    [Fact]
    public void Calloc_zeroes_reused_blocks()
    {
        using var allocator = new SmallObjectAllocator();
        byte* dirty = (byte*)allocator.Malloc(48);
        Blocks.Fill(dirty, 48, 0x5A);
        allocator.Free(dirty);

        byte* zeroed = (byte*)allocator.Calloc(6, 8);
        Assert.True(zeroed == dirty, "the freed block is reused first");
        Assert.True(Blocks.IsZero(zeroed, 48));
        allocator.Free(zeroed);
    }

    [Fact]
    public void Empty_arenas_go_back_to_the_os_keeping_one_spare()
    {
        var arenas = new CountingArenaAllocator();
        using var allocator = new SmallObjectAllocator(arenaAllocator: arenas);
        var blocks = new List<nint>();
        for (int i = 0; i < 40_000; i++)
        {
            blocks.Add((nint)allocator.Malloc(128)); // 40,000 × 128 B ≈ 5 MiB: several arenas
        }

        SmallObjectStatistics full = allocator.GetStatistics();
        AssertHealthy(allocator);
        Assert.True(full.ArenasCurrent >= 5, $"expected several arenas, got {full.ArenasCurrent}");

        foreach (nint p in blocks)
        {
            allocator.Free((void*)p);
        }

        allocator.Collect();
        SmallObjectStatistics after = allocator.GetStatistics();
        Assert.Equal(0, after.BlocksInUse);
        Assert.Equal(1, after.ArenasCurrent); // the one spare
        Assert.Equal(full.ArenasHighWater, after.ArenasHighWater);
        Assert.Equal(after.ArenasAllocatedTotal - 1, after.ArenasReclaimed);
        Assert.Equal(arenas.Allocated - 1, arenas.Freed);
    }

    [Fact]
    public void Nearly_empty_arenas_drain_because_pools_come_from_the_most_used_arena_first()
    {
        using var allocator = new SmallObjectAllocator();
        var blocks = new List<nint>();
        for (int i = 0; i < 3 * 64 * 127; i++)
        {
            blocks.Add((nint)allocator.Malloc(128)); // three arenas' worth of 128-byte pools
        }

        // Free all but one block in every second pool of the first arena... simpler: free 90 % everywhere, then
        // allocate again: new blocks must fill the partly used pools rather than spread over fresh arenas.
        for (int i = 0; i < blocks.Count; i++)
        {
            if (i % 10 != 0)
            {
                allocator.Free((void*)blocks[i]);
                blocks[i] = 0;
            }
        }

        AssertHealthy(allocator);
        long arenasBefore = allocator.GetStatistics().ArenasCurrent;
        for (int i = 0; i < blocks.Count; i++)
        {
            if (blocks[i] == 0 && i % 3 == 0)
            {
                blocks[i] = (nint)allocator.Malloc(128);
            }
        }

        Assert.True(allocator.GetStatistics().ArenasCurrent <= arenasBefore, "refilling freed space must not need new arenas");
        foreach (nint p in blocks.Where(p => p != 0))
        {
            allocator.Free((void*)p);
        }

        allocator.Collect();
        Assert.Equal(1, allocator.GetStatistics().ArenasCurrent);
    }

    [Fact]
    public void The_arena_allocator_can_be_swapped_at_any_time_and_each_arena_goes_back_where_it_came_from()
    {
        var first = new CountingArenaAllocator();
        var second = new CountingArenaAllocator();
        var allocator = new SmallObjectAllocator(arenaAllocator: first);
        var blocks = new List<nint>();
        for (int i = 0; i < 10_000; i++)
        {
            blocks.Add((nint)allocator.Malloc(256)); // more than one arena
        }

        allocator.ArenaAllocator = second;
        for (int i = 0; i < 10_000; i++)
        {
            blocks.Add((nint)allocator.Malloc(256));
        }

        Assert.True(first.Allocated > 0 && second.Allocated > 0);
        foreach (nint p in blocks)
        {
            allocator.Free((void*)p);
        }

        Assert.True(allocator.TryRelease());
        Assert.Equal((first.Allocated, second.Allocated), (first.Freed, second.Freed));
    }

    [Fact]
    public void Arenas_that_are_not_aligned_lose_one_pool_and_still_work()
    {
        var arenas = new CountingArenaAllocator(misalign: true);
        var allocator = new SmallObjectAllocator(arenaAllocator: arenas);
        var blocks = new List<nint>();
        for (int i = 0; i < 20_000; i++)
        {
            byte* p = (byte*)allocator.Malloc(64);
            Blocks.Fill(p, 64, (byte)i);
            blocks.Add((nint)p);
        }

        SmallObjectStatistics s = allocator.GetStatistics();
        AssertHealthy(allocator);
        Assert.Equal(s.ArenasCurrent * 16384, s.BytesLostToArenaAlignment); // one pool per arena
        Assert.Equal(s.TotalBytes, s.BytesInAllocatedBlocks + s.BytesInAvailableBlocks + (s.UnusedPools * 16384)
            + s.BytesLostToPoolHeaders + s.BytesLostToQuantization + s.BytesLostToArenaAlignment);

        for (int i = 0; i < blocks.Count; i++)
        {
            Assert.True(Blocks.Holds((void*)blocks[i], 64, (byte)i));
            Assert.Equal((nuint)64, allocator.BlockSize((void*)blocks[i])); // the map covers both slots of each arena
            allocator.Free((void*)blocks[i]);
        }

        Assert.True(allocator.TryRelease());
        Assert.Equal(arenas.Allocated, arenas.Freed);
    }

    [Fact]
    public void Dispose_keeps_arenas_with_live_blocks_mapped()
    {
        var arenas = new CountingArenaAllocator();
        var allocator = new SmallObjectAllocator(arenaAllocator: arenas);
        void* p = allocator.Malloc(32);
        Assert.False(allocator.TryRelease());
        Assert.Equal(0, arenas.Freed);
        *(long*)p = 42; // still usable: nothing was unmapped
        allocator.Free(p);
        Assert.True(allocator.TryRelease());
        Assert.Equal(1, arenas.Freed);
    }

    [Fact]
    public void Blocks_of_a_thread_that_ended_can_be_freed_anywhere_and_its_pools_are_adopted_or_returned()
    {
        var arenas = new CountingArenaAllocator();
        var allocator = new SmallObjectAllocator(arenaAllocator: arenas);
        var blocks = new nint[5000];
        var worker = new Thread(() =>
        {
            for (int i = 0; i < blocks.Length; i++)
            {
                blocks[i] = (nint)allocator.Malloc(80);
            }
        });
        worker.Start();
        worker.Join();

        // Free half from this thread: remote frees into pools whose owner has ended.
        for (int i = 0; i < blocks.Length; i += 2)
        {
            allocator.Free((void*)blocks[i]);
        }

        // Allocating the same class adopts the abandoned pools instead of taking new ones.
        long poolsBefore = allocator.GetStatistics().Classes[4].Pools;
        var more = new List<nint>();
        for (int i = 0; i < 2000; i++)
        {
            more.Add((nint)allocator.Malloc(80));
        }

        Assert.Equal(poolsBefore, allocator.GetStatistics().Classes[4].Pools);
        AssertHealthy(allocator);
        foreach (nint p in more.Concat(blocks.Where((_, i) => i % 2 == 1)))
        {
            allocator.Free((void*)p);
        }

        allocator.Collect();
        SmallObjectStatistics s = allocator.GetStatistics();
        Assert.Equal((0L, 1L), (s.BlocksInUse, s.ArenasCurrent));
        Assert.True(allocator.TryRelease());
        Assert.Equal(arenas.Allocated, arenas.Freed);
    }

    [Fact]
    public void Threads_allocating_and_freeing_each_others_blocks_leave_exact_accounting_and_return_every_arena()
    {
        var arenas = new CountingArenaAllocator();
        using var runtime = new RuntimeMemory(new SmallObjectProvider(arenas));
        const int Threads = 4, PerThread = 30_000;
        var handoff = new ConcurrentQueue<(MemoryDomainKind Kind, nint Block, int Size, byte Seed)>();
        long corrupt = 0;

        var workers = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var rng = new Random(77 + t);
            for (int i = 0; i < PerThread; i++)
            {
                var kind = rng.Next(2) == 0 ? MemoryDomainKind.Mem : MemoryDomainKind.Obj;
                int size = rng.Next(100) < 80 ? rng.Next(16, 65) : rng.Next(1, 700);
                byte seed = (byte)rng.Next(256);
                byte* p = (byte*)runtime[kind].Malloc((nuint)size);
                Blocks.Fill(p, (nuint)size, seed);
                if (rng.Next(3) == 0)
                {
                    handoff.Enqueue((kind, (nint)p, size, seed)); // freed by whichever thread takes it
                }
                else if (Blocks.Holds(p, (nuint)size, seed))
                {
                    runtime[kind].Free(p);
                }
                else
                {
                    Interlocked.Increment(ref corrupt);
                }

                if (rng.Next(2) == 0 && handoff.TryDequeue(out var other))
                {
                    if (!Blocks.Holds((void*)other.Block, (nuint)other.Size, other.Seed))
                    {
                        Interlocked.Increment(ref corrupt);
                    }

                    runtime[other.Kind].Free((void*)other.Block);
                }
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join()); // the threads end: their heaps are abandoned at the next collection
        AssertHealthy(runtime.SmallObjects(MemoryDomainKind.Mem)!);
        AssertHealthy(runtime.SmallObjects(MemoryDomainKind.Obj)!);

        while (handoff.TryDequeue(out var rest))
        {
            runtime[rest.Kind].Free((void*)rest.Block);
        }

        Assert.Equal(0, corrupt);
        RuntimeMemoryStatistics accounting = runtime.GetStatistics();
        Assert.Equal((0L, 0L), (accounting.LiveBlocks, accounting.LiveBytes));
        Assert.Equal(Threads * PerThread, accounting.Domains.Sum(d => d.Allocations));
        foreach (MemoryDomainKind kind in new[] { MemoryDomainKind.Mem, MemoryDomainKind.Obj })
        {
            SmallObjectAllocator small = runtime.SmallObjects(kind)!;
            small.Collect();
            SmallObjectStatistics s = small.GetStatistics();
            AssertHealthy(small);
            Assert.Equal(0, s.BlocksInUse);
            Assert.True(s.ArenasCurrent <= 1, $"{kind}: {s.ArenasCurrent} arenas left; at most the one spare may stay");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Freeing_everything_in_allocation_or_reverse_order_returns_the_arenas_without_collect(bool reverse)
    {
        using var allocator = new SmallObjectAllocator();
        var blocks = new nint[200_000];
        for (int i = 0; i < blocks.Length; i++)
        {
            blocks[i] = (nint)allocator.Malloc(32);
        }

        Assert.True(allocator.GetStatistics().ArenasCurrent >= 6);
        for (int i = 0; i < blocks.Length; i++)
        {
            allocator.Free((void*)blocks[reverse ? blocks.Length - 1 - i : i]);
        }

        SmallObjectStatistics s = allocator.GetStatistics();
        Assert.Equal(0, s.BlocksInUse);
        Assert.True(s.ArenasCurrent <= 2, $"{s.ArenasCurrent} arenas left: at most the current pool's arena and the spare");
    }

    [Fact]
    public void After_collect_blocks_freed_by_other_threads_are_reused_before_new_pools_are_taken()
    {
        using var allocator = new SmallObjectAllocator();
        var blocks = new nint[20_000];
        for (int i = 0; i < blocks.Length; i++)
        {
            blocks[i] = (nint)allocator.Malloc(16);
        }

        var freer = new Thread(() =>
        {
            for (int i = 0; i < blocks.Length; i += 2)
            {
                allocator.Free((void*)blocks[i]); // remote frees: half of every pool
            }
        });
        freer.Start();
        freer.Join();
        allocator.Collect(); // moves the remote frees onto the pools' local lists
        AssertHealthy(allocator);

        long poolsBefore = allocator.GetStatistics().Classes[0].Pools;
        for (int i = 0; i < blocks.Length; i += 2)
        {
            blocks[i] = (nint)allocator.Malloc(16);
        }

        Assert.Equal(poolsBefore, allocator.GetStatistics().Classes[0].Pools);
        foreach (nint p in blocks)
        {
            allocator.Free((void*)p);
        }
    }

    [Fact]
    public void Pools_of_an_ended_thread_that_drain_through_remote_frees_are_returned_at_the_next_acquisition()
    {
        using var allocator = new SmallObjectAllocator();
        var blocks = new nint[200_000];
        var worker = new Thread(() =>
        {
            for (int i = 0; i < blocks.Length; i++)
            {
                blocks[i] = (nint)allocator.Malloc(48);
            }
        });
        worker.Start();
        worker.Join();
        _ = allocator.GetStatistics(); // abandons the ended thread's heap
        foreach (nint p in blocks)
        {
            allocator.Free((void*)p);
        }

        // Any later pool acquisition sweeps the drained abandoned pools: no Collect() needed.
        var other = new List<nint>();
        for (int i = 0; i < 100; i++)
        {
            other.Add((nint)allocator.Malloc(256));
        }

        SmallObjectStatistics s = allocator.GetStatistics();
        Assert.Equal(100, s.BlocksInUse);
        Assert.True(s.ArenasCurrent <= 2, $"{s.ArenasCurrent} arenas still mapped");
        foreach (nint p in other)
        {
            allocator.Free((void*)p);
        }
    }

    [Fact]
    public void A_thread_that_first_only_freed_then_allocates_frees_its_own_blocks_locally()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        MemoryDomain obj = runtime.Obj;
        nint foreign = 0;
        var producer = new Thread(() => foreign = (nint)obj.Malloc(16));
        producer.Start();
        producer.Join();

        obj.Free((void*)foreign);       // this thread's first call: a free, so it is known here as "owns nothing"
        void* p = obj.Calloc(1, 16);    // then it allocates (calloc takes the allocator's own path and creates the heap)
        obj.Free(p);                    // must be recognised as the owner's free: back on the local list ...
        void* q = obj.Malloc(16);
        Assert.True(q == p, "... so the next malloc of the class gets the same block back");
        obj.Free(q);
        Assert.Empty(runtime.SmallObjects(MemoryDomainKind.Obj)!.CheckInvariants());
    }

    [Fact]
    public void A_disposed_allocator_fails_requests_instead_of_touching_freed_memory()
    {
        var allocator = new SmallObjectAllocator();
        allocator.Free(allocator.Malloc(64));
        Assert.True(allocator.TryRelease());
        Assert.True(allocator.Malloc(64) == null);
        Assert.Equal(0, allocator.GetStatistics().ArenasCurrent);
    }

    [Fact]
    public void The_statistics_report_of_a_deterministic_workload_matches_the_snapshot()
    {
        using var allocator = new SmallObjectAllocator();
        var blocks = new List<nint>();
        for (int i = 0; i < 3000; i++)
        {
            blocks.Add((nint)allocator.Malloc((nuint)(1 + (i * 37 % 512))));
        }

        for (int i = 0; i < blocks.Count; i += 3)
        {
            allocator.Free((void*)blocks[i]); // a third freed: pools partly used
        }

        TextSnapshot.Verify(SmallObjectReport.Format(allocator.GetStatistics()));
        for (int i = 0; i < blocks.Count; i++)
        {
            if (i % 3 != 0)
            {
                allocator.Free((void*)blocks[i]);
            }
        }
    }

    private sealed class SmallObjectProvider(ArenaAllocator arenas) : IAllocatorProvider
    {
        public string Name => "pymalloc";

        public MemoryAllocator CreateBaseAllocator(MemoryDomainKind domain) =>
            domain == MemoryDomainKind.Raw ? new SystemAllocator() : new SmallObjectAllocator(arenaAllocator: arenas);
    }
}
