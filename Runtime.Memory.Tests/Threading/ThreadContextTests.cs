using Runtime.Memory.Accounting;
using Runtime.Memory.Tests.Infrastructure;
using Runtime.Memory.Threading;

namespace Runtime.Memory.Tests.Threading;

/// <summary>
/// The per-thread context of each runtime: found in one lookup whichever runtimes a thread alternates between, kept
/// until both the runtime and the thread have let go of it, and its counters never lost when a thread ends.
/// </summary>
public sealed unsafe class ThreadContextTests
{
    private static ThreadContext* Find(RuntimeMemory runtime) => ThreadContexts.Find(runtime.Accounting.Slot, runtime.Accounting.Owner);

    [Fact]
    public void The_context_is_laid_out_as_its_comment_says()
    {
        Assert.Equal(0, (int)System.Runtime.InteropServices.Marshal.OffsetOf<ThreadContext>(nameof(ThreadContext.InCall)));
        Assert.Equal(64, (int)System.Runtime.InteropServices.Marshal.OffsetOf<ThreadContext>(nameof(ThreadContext.Heaps)));
        Assert.Equal(128, (int)System.Runtime.InteropServices.Marshal.OffsetOf<ThreadContext>(nameof(ThreadContext.Accounts)));
        Assert.Equal(64, sizeof(DomainCounters)); // one cache line per account
        Assert.Equal(128 + (MemoryAccounting.AccountCount * 64), sizeof(ThreadContext));
    }

    [Fact]
    public void Two_runtimes_used_alternately_on_one_thread_each_keep_their_context_in_the_table()
    {
        using RuntimeMemory a = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using RuntimeMemory b = TestRuntimes.Create(AllocatorNames.Pymalloc);
        Assert.NotEqual(a.Accounting.Slot, b.Accounting.Slot);
        var held = new List<nint>();
        for (int i = 0; i < 1000; i++)
        {
            held.Add((nint)a.Obj.Malloc(32));
            held.Add((nint)b.Obj.Malloc(64));
        }

        ThreadContext* ca = Find(a);
        ThreadContext* cb = Find(b);
        Assert.True(ca != null && cb != null && ca != cb, "each runtime's context is in this thread's table");
        Assert.Equal(1000, a.Obj.LiveBlocks);
        Assert.Equal(1000 * 64, b.Obj.LiveBytes);
        for (int i = 0; i < held.Count; i += 2)
        {
            a.Obj.Free((void*)held[i]);
            b.Obj.Free((void*)held[i + 1]);
        }

        Assert.True(Find(a) == ca && Find(b) == cb, "no context was created again");
        Assert.Equal((0L, 0L), (a.Obj.LiveBlocks, b.Obj.LiveBlocks));
    }

    [Fact]
    public void More_runtimes_than_table_slots_share_the_last_slot_and_count_exactly()
    {
        var runtimes = Enumerable.Range(0, ThreadContexts.Slots + 8).Select(_ => TestRuntimes.Create(AllocatorNames.Pymalloc)).ToArray();
        try
        {
            Assert.Contains(runtimes, r => r.Accounting.Slot == ThreadContexts.SharedSlot);
            var held = new nint[runtimes.Length, 3];
            for (int round = 0; round < 3; round++)
            {
                for (int r = 0; r < runtimes.Length; r++)
                {
                    held[r, round] = (nint)runtimes[r].Obj.Malloc((nuint)(16 * (r % 4 + 1)));
                }
            }

            for (int r = 0; r < runtimes.Length; r++)
            {
                Assert.Equal(3, runtimes[r].Obj.LiveBlocks);
                Assert.Equal(3 * 16 * (r % 4 + 1), runtimes[r].Obj.LiveBytes);
                for (int round = 0; round < 3; round++)
                {
                    runtimes[r].Obj.Free((void*)held[r, round]);
                }

                Assert.Equal(0, runtimes[r].Obj.LiveBlocks);
            }
        }
        finally
        {
            foreach (RuntimeMemory r in runtimes)
            {
                r.Dispose();
            }
        }
    }

    [Fact]
    public void A_thread_that_ends_leaves_its_counts_behind_and_its_blocks_can_be_freed_elsewhere()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        var blocks = new nint[100];
        var worker = new Thread(() =>
        {
            for (int i = 0; i < blocks.Length; i++)
            {
                blocks[i] = (nint)runtime.Obj.Malloc(48);
            }
        });
        worker.Start();
        worker.Join();

        GC.Collect();
        GC.WaitForPendingFinalizers(); // the thread's side lets go of its context (its table's finalizer)
        Assert.Equal(100, runtime.Obj.LiveBlocks); // the runtime folds the ended thread's counters and lets go too
        foreach (nint block in blocks)
        {
            runtime.Obj.Free((void*)block);
        }

        DomainStatistics s = runtime.Obj.GetStatistics();
        Assert.Equal((0L, 0L, 100L, 100L), (s.LiveBlocks, s.LiveBytes, s.Allocations, s.Frees));
    }

    [Fact]
    public void A_disposed_runtimes_slot_goes_to_a_new_runtime_and_the_old_ones_calls_still_fail_cleanly()
    {
        RuntimeMemory old = TestRuntimes.Create(AllocatorNames.Pymalloc);
        old.Obj.Free(old.Obj.Malloc(16));
        int slot = old.Accounting.Slot;
        old.Dispose();

        using RuntimeMemory next = TestRuntimes.Create(AllocatorNames.Pymalloc);
        if (next.Accounting.Slot == slot)
        {
            Assert.True(Find(next) == null, "the old runtime's entry never matches the new one's id");
        }

        void* p = next.Obj.Malloc(16);
        Assert.True(p != null);
        Assert.True(old.Obj.Malloc(16) == null); // the closed pipeline: this thread's old context is still its own to use
        next.Obj.Free(p);
        Assert.Equal(0, next.Obj.LiveBlocks);
        Assert.Equal((1L, 1L), (old.Obj.GetStatistics().Allocations, old.Obj.GetStatistics().Frees)); // folded at Dispose
    }

    [Fact]
    public void Contexts_of_runtimes_disposed_on_other_threads_are_freed_by_their_threads_without_harm()
    {
        for (int i = 0; i < 50; i++)
        {
            RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
            var t = new Thread(() => runtime.Obj.Free(runtime.Obj.Malloc(32)));
            t.Start();
            t.Join();
            runtime.Obj.Free(runtime.Obj.Malloc(32));
            runtime.Dispose(); // lets go of this thread's and the ended thread's contexts
        }

        GC.Collect();
        GC.WaitForPendingFinalizers();
        using RuntimeMemory last = TestRuntimes.Create(AllocatorNames.Pymalloc);
        last.Obj.Free(last.Obj.Malloc(32)); // this thread's slow path frees the contexts the runtimes let go of
        Assert.Equal(0, last.Obj.LiveBlocks);
    }

    [Fact]
    public void A_runtime_accounts_29_library_tags_and_says_so_at_the_30th()
    {
        using RuntimeMemory runtime = TestRuntimes.Create();
        for (int i = 0; i < MemoryAccounting.MaxTags; i++)
        {
            runtime.Tag($"lib{i}");
        }

        Assert.Same(runtime.Tag("LIB3"), runtime.Tag("lib3"));
        var error = Assert.Throws<InvalidOperationException>(() => runtime.Tag("one-too-many"));
        Assert.Contains("at most 29 library tags", error.Message);
        Assert.Contains("'one-too-many'", error.Message);
    }
}
