using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Options;
using Runtime.Memory.Hosting;
using Runtime.Memory.Tests.Infrastructure;
using Runtime.Memory.Tracing;

namespace Runtime.Memory.Tests.Tracing;

/// <summary>The tracer: tracemalloc's operations, reentrancy, start/stop under live blocks, threads, sampling, configuration.</summary>
public sealed unsafe class MemoryTracerTests
{
    /// <summary>Enters a frame of a pretend interpreter on this thread (ThreadFrameStack) until disposed.</summary>
    internal static IDisposable At(string file, int line, string? function = null)
    {
        ThreadFrameStack.Push(file, line, function);
        return new PopOnDispose();
    }

    private sealed class PopOnDispose : IDisposable
    {
        public void Dispose() => ThreadFrameStack.Pop();
    }

    internal static RuntimeMemory Traced(string allocator = AllocatorNames.Pymalloc, int frames = 1, long sampleBytes = 0)
    {
        RuntimeMemory runtime = TestRuntimes.Create(allocator);
        runtime.Tracer.FrameProvider = new ThreadFrameStack();
        runtime.Tracer.Start(frames, sampleBytes);
        return runtime;
    }

    /// <summary>
    /// A traced free finds a pool block's word through the pool's class as the arena map records it, not the pool's
    /// header: pools emptied and carved again for other classes must keep the two in step, or frees would clear the
    /// wrong words (traces left behind, or another block's trace dropped).
    /// </summary>
    [Fact]
    public void Traced_frees_find_their_words_in_pools_carved_again_for_other_classes()
    {
        using RuntimeMemory runtime = Traced(AllocatorNames.Pymalloc);
        using (At("main.lua", 1))
        {
            var rng = new Random(7);
            foreach (nuint size in new nuint[] { 16, 512, 48, 272, 16, 96 })
            {
                // Enough blocks to fill many pools, freed in a random order, so the pools go back and are carved anew.
                var blocks = new List<nint>();
                for (int i = 0; i < 20_000; i++)
                {
                    blocks.Add((nint)runtime.Obj.Malloc(size));
                }

                Assert.Equal(20_000, runtime.Tracer.TracedBlocks);
                Assert.Equal(20_000L * (long)size, runtime.Tracer.GetTracedMemory().Current);
                var keep = new HashSet<nint>(blocks.Where((_, i) => i % 1000 == 0));
                foreach (nint block in blocks.OrderBy(_ => rng.Next()))
                {
                    if (!keep.Contains(block))
                    {
                        runtime.Obj.Free((void*)block);
                    }
                }

                Assert.Equal(keep.Count, runtime.Tracer.TracedBlocks);
                foreach (nint block in keep)
                {
                    Assert.Equal("main.lua:1", runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, (void*)block)!.MostRecent.ToString());
                    runtime.Obj.Free((void*)block);
                }

                Assert.Equal(0, runtime.Tracer.TracedBlocks);
                Assert.Equal(0L, runtime.Tracer.GetTracedMemory().Current);
            }
        }
    }

    /// <summary>
    /// The capture reuses the thread's last traceback, of any depth, while ThreadFrameStack's version has not moved: a
    /// call of the same function at the same line from another caller (the same top frame and depth, another frame
    /// below) must give a traceback of its own with 3 frames, and the same one with 1.
    /// </summary>
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 2)]
    public void A_deeper_frame_that_moved_gives_a_new_traceback_when_it_is_captured(int frames, int distinct)
    {
        using RuntimeMemory runtime = Traced(AllocatorNames.Pymalloc, frames);
        var blocks = new List<nint>();
        foreach (string caller in new[] { "a.lua", "b.lua" })
        {
            using (At(caller, 1, "main"))
            using (At("lib.lua", 5, "f"))
            {
                blocks.Add((nint)runtime.Obj.Malloc(16));
                blocks.Add((nint)runtime.Obj.Malloc(16));
            }
        }

        Traceback[] tracebacks = blocks.Select(b => runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, (void*)b)!).ToArray();
        Assert.All(tracebacks, tb => Assert.Equal("lib.lua:5", tb.MostRecent.ToString()));
        Assert.Equal(distinct, tracebacks.Distinct().Count());
        if (frames > 1)
        {
            Assert.Equal(["a.lua", "a.lua", "b.lua", "b.lua"], tracebacks.Select(tb => tb.Frames[0].File));
        }

        foreach (nint block in blocks)
        {
            runtime.Obj.Free((void*)block);
        }
    }

    /// <summary>
    /// The exact fast path reads ThreadFrameStack in place and reuses the thread's last traceback while the top frame
    /// and the depth stay the same: every move of the interpreter (a new line, a call, a return, a call at the same
    /// line one level deeper, another file at the same line) must still give the block the traceback of that moment.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void A_one_frame_capture_follows_every_move_of_the_frame_stack(int frames)
    {
        using RuntimeMemory runtime = Traced(AllocatorNames.Pymalloc, frames);
        var blocks = new List<(nint Block, string Where, int Depth)>();
        void Alloc(string where, int depth)
        {
            for (int i = 0; i < 3; i++) // the same place again: the reused traceback
            {
                blocks.Add(((nint)runtime.Obj.Malloc(16), where, depth));
            }
        }

        using (At("main.lua", 1, "main"))
        {
            Alloc("main.lua:1 main", 1);
            ThreadFrameStack.SetLine(2);
            Alloc("main.lua:2 main", 1);
            using (At("main.lua", 2, "main")) // the same frame one level deeper: another traceback
            {
                Alloc("main.lua:2 main", 2);
                using (At("lib.lua", 2, "main")) // another file at the same line
                {
                    Alloc("lib.lua:2 main", 3);
                }

                Alloc("main.lua:2 main", 2);
            }

            Alloc("main.lua:2 main", 1);
        }

        using (At("main.lua", 2, "other")) // the same file and line in another function
        {
            Alloc("main.lua:2 other", 1);
        }

        foreach ((nint block, string where, int depth) in blocks)
        {
            Traceback tb = runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, (void*)block)!;
            Assert.Equal(where, $"{tb.MostRecent} {tb.MostRecent.Function}");
            Assert.Equal(depth, tb.TotalFrames);
            Assert.Equal(Math.Min(depth, frames), tb.Frames.Count);
        }

        Assert.Equal(5, blocks.Select(b => runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, (void*)b.Block)).Distinct().Count());
        foreach ((nint block, _, _) in blocks)
        {
            runtime.Obj.Free((void*)block);
        }

        Assert.Equal(0, runtime.Tracer.TracedBlocks);
    }

    [Theory]
    [InlineData(AllocatorNames.Malloc)]
    [InlineData(AllocatorNames.Pymalloc)]
    [InlineData(AllocatorNames.PymallocDebug)]
    public void Every_domain_traces_size_domain_and_traceback_and_frees_remove_the_trace(string allocator)
    {
        using RuntimeMemory runtime = Traced(allocator, frames: 2);
        void* raw, mem, obj;
        using (At("main.lua", 1))
        using (At("lib.lua", 7, "make"))
        {
            raw = runtime.Raw.Malloc(1000);
            mem = runtime.Mem.Calloc(10, 30);
            obj = runtime.Obj.Malloc(24);
        }

        TraceSnapshot snapshot = runtime.Tracer.TakeSnapshot();
        Assert.Equal(3, snapshot.Traces.Count);
        Assert.Equal([(0u, 1000L), (1u, 300L), (2u, 24L)], snapshot.Traces.Select(t => (t.Domain, t.Size)).Order());
        Traceback tb = runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, obj)!;
        Assert.Equal([new Frame("main.lua", 1), new Frame("lib.lua", 7, "make")], tb.Frames);
        Assert.Same(tb, runtime.Tracer.GetTraceback(raw)); // interned: one object per distinct traceback
        Assert.Null(runtime.Tracer.GetTraceback(MemoryDomainKind.Raw, obj)); // keyed by domain too
        Assert.Equal((1324L, 1324L), runtime.Tracer.GetTracedMemory());

        runtime.Raw.Free(raw);
        runtime.Mem.Free(mem);
        runtime.Obj.Free(obj);
        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal((0L, 1324L), runtime.Tracer.GetTracedMemory());
        runtime.Tracer.ResetPeak();
        Assert.Equal((0L, 0L), runtime.Tracer.GetTracedMemory());
    }

    [Fact]
    public void Blocks_of_every_size_class_are_found_by_address_and_snapshot_with_their_own_sizes()
    {
        using RuntimeMemory runtime = Traced();
        var blocks = new List<(nint Block, nuint Size)>();
        using (At("sizes.lua", 3))
        {
            for (nuint size = 0; size <= 600; size += 7) // every class, the 0-byte request and large blocks
            {
                for (int i = 0; i < 3; i++)
                {
                    blocks.Add(((nint)runtime.Obj.Malloc(size), size));
                }
            }
        }

        long total = blocks.Sum(b => (long)b.Size);
        Assert.Equal(total, runtime.Tracer.GetTracedMemory().Current);
        Assert.Equal(blocks.Count, runtime.Tracer.TracedBlocks);
        Assert.Equal(total, runtime.Tracer.TakeSnapshot().TotalSize);
        Assert.Equal(
            blocks.Select(b => ((nuint)b.Block, (long)b.Size)).Order(),
            runtime.Tracer.CurrentTable!.Copy().Select(s => (s.Address, s.EstimatedSize)).Order()); // addresses as allocated
        foreach ((nint block, nuint size) in blocks)
        {
            Assert.Equal(new Frame("sizes.lua", 3), runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, (void*)block)!.MostRecent);
            Assert.Null(runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, (byte*)block + (size > 16 ? 16 : 8))); // inside a block: no trace
            Assert.Null(runtime.Tracer.GetTraceback(MemoryDomainKind.Mem, (void*)block));
        }

        foreach ((nint block, _) in blocks)
        {
            runtime.Obj.Free((void*)block);
        }

        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
    }

    private sealed class ForwardingHook : MemoryHook
    {
        public override string Name => "forwarding";
    }

    [Fact]
    public void Blocks_traced_under_a_hook_that_is_then_removed_from_below_the_tracer_are_still_untraced_when_freed()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        runtime.Tracer.FrameProvider = new ThreadFrameStack();
        var forwarding = new ForwardingHook();
        runtime.Obj.InstallHook(forwarding);
        runtime.Tracer.Start(); // the tracer above the forwarding hook: traces keyed by address
        var before = new List<nint>();
        for (nuint size = 1; size <= 512; size += 31)
        {
            before.Add((nint)runtime.Obj.Malloc(size));
        }

        Assert.True(runtime.Obj.RemoveHook(forwarding)); // now right above the small-object allocator: dense slots
        var after = new List<nint>();
        for (nuint size = 1; size <= 512; size += 31)
        {
            after.Add((nint)runtime.Obj.Malloc(size));
        }

        Assert.Equal(before.Count + after.Count, runtime.Tracer.TracedBlocks);
        Assert.NotNull(runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, (void*)before[3]));
        Assert.NotNull(runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, (void*)after[3]));
        foreach (nint block in before.Concat(after))
        {
            runtime.Obj.Free((void*)block);
        }

        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
    }

    [Fact]
    public void Realloc_retraces_the_block_where_it_was_resized_and_a_failed_realloc_keeps_the_old_trace()
    {
        using RuntimeMemory runtime = Traced(AllocatorNames.Malloc);
        void* p;
        using (At("a.lua", 1))
        {
            p = runtime.Mem.Malloc(100);
        }

        using (At("b.lua", 2))
        {
            p = runtime.Mem.Realloc(p, 5000);
        }

        Assert.Equal(new Frame("b.lua", 2), runtime.Tracer.GetTraceback(p)!.MostRecent);
        Assert.Equal(5000, runtime.Tracer.GetTracedMemory().Current);
        Assert.True(runtime.Mem.Realloc(p, nuint.MaxValue / 2) == null); // refused at the front door: nothing changes
        Assert.Equal(new Frame("b.lua", 2), runtime.Tracer.GetTraceback(p)!.MostRecent);

        var failing = new Runtime.Memory.Testing.FailingAllocator();
        runtime.Tracer.Stop();
        runtime.Mem.InstallHook(failing);                                // below the tracer
        runtime.Tracer.Start();
        void* q;
        using (At("c.lua", 3))
        {
            q = runtime.Mem.Malloc(64);
        }

        failing.FailFrom(1);
        using (At("d.lua", 4))
        {
            Assert.True(runtime.Mem.Realloc(q, 128) == null);
        }

        Assert.Equal(new Frame("c.lua", 3), runtime.Tracer.GetTraceback(q)!.MostRecent);
        failing.FailNever();
        runtime.Mem.Free(q);
        runtime.Mem.Free(p);
    }

    [Fact]
    public void Start_and_stop_work_while_blocks_are_live_and_only_blocks_made_while_tracing_are_traced()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        runtime.Tracer.FrameProvider = new ThreadFrameStack();
        Assert.False(runtime.Tracer.IsTracing);
        Assert.Equal(0, runtime.Tracer.TracebackLimit);
        Assert.Equal(-2, runtime.Tracer.Track(9, 0x1000, 1));
        Assert.Throws<InvalidOperationException>(() => runtime.Tracer.TakeSnapshot());
        void* before = runtime.Obj.Malloc(32);

        runtime.Tracer.Start(frames: 4);
        runtime.Tracer.Start(frames: 9); // already tracing: nothing changes (tracemalloc's rule)
        Assert.Equal(4, runtime.Tracer.TracebackLimit);
        void* during = runtime.Obj.Malloc(48);
        Assert.Null(runtime.Tracer.GetTraceback(before));
        Assert.NotNull(runtime.Tracer.GetTraceback(during));
        Assert.True(runtime.Tracer.TracingMemory > 0);
        runtime.Obj.Free(before); // untraced: nothing to remove
        Assert.Equal(1, runtime.Tracer.TracedBlocks);

        runtime.Tracer.Stop();
        Assert.Equal(0, runtime.Tracer.TracingMemory);
        Assert.Equal((0L, 0L), runtime.Tracer.GetTracedMemory());
        runtime.Tracer.Start();
        Assert.Null(runtime.Tracer.GetTraceback(during)); // traces went with the stop
        runtime.Obj.Free(during);
        Assert.Equal(0, runtime.Obj.LiveBlocks);
        Assert.StartsWith("tracing > ", runtime.Obj.DescribeChain()); // the tracer's hook on top of the chain
        Assert.Throws<ArgumentOutOfRangeException>(() => { runtime.Tracer.Stop(); runtime.Tracer.Start(frames: 0); });
        Assert.Contains("the number of frames must be in range [1; 65535]",
            Assert.Throws<ArgumentOutOfRangeException>(() => runtime.Tracer.Start(frames: 65536)).Message);
    }

    /// <summary>
    /// The domain's fast path finds a pool block's trace word through the thread's one-pool cache: blocks of pools
    /// taken in turn, a restart between the malloc and the free (the cache then belongs to the old session's table),
    /// and frees from a thread whose cache holds another pool must all find (or not find) the right word.
    /// </summary>
    [Fact]
    public void Traces_of_blocks_in_alternating_pools_across_restarts_and_threads_are_each_dropped_once()
    {
        using RuntimeMemory runtime = Traced();
        nuint[] sizes = [16, 512, 100, 16, 512, 33];
        var blocks = new List<nint>();
        long expected = 0;
        for (int round = 0; round < 200; round++)
        {
            foreach (nuint size in sizes) // each size its own class, so its own pool: the cache moves on every call
            {
                blocks.Add((nint)runtime.Obj.Malloc(size));
                expected += (long)size;
            }
        }

        Assert.Equal(blocks.Count, runtime.Tracer.TracedBlocks);
        Assert.Equal(expected, runtime.Tracer.GetTracedMemory().Current);

        // Half freed here in reverse order (each free in another pool than the last), half on another thread.
        for (int i = blocks.Count - 1; i >= blocks.Count / 2; i--)
        {
            expected -= (long)sizes[i % sizes.Length];
            runtime.Obj.Free((void*)blocks[i]);
            Assert.Equal(expected, runtime.Tracer.GetTracedMemory().Current);
        }

        var other = new Thread(() =>
        {
            runtime.Obj.Free(runtime.Obj.Malloc(200)); // this thread's cache: a pool of its own
            for (int i = 0; i < blocks.Count / 2; i++)
            {
                runtime.Obj.Free((void*)blocks[i]);
            }
        });
        other.Start();
        other.Join();
        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);

        // A restart between malloc and free: the block is not traced in the new session, and its free (through a cache
        // filled under the old session) drops nothing; a block of the new session in the same pool is still found.
        void* old = runtime.Obj.Malloc(48);
        runtime.Tracer.Stop();
        runtime.Tracer.Start();
        void* fresh = runtime.Obj.Malloc(48);
        Assert.Null(runtime.Tracer.GetTraceback(old));
        Assert.NotNull(runtime.Tracer.GetTraceback(fresh));
        runtime.Obj.Free(old);
        Assert.Equal((48L, 48L), runtime.Tracer.GetTracedMemory());
        runtime.Obj.Free(fresh);
        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal(0, runtime.Obj.LiveBlocks);
    }

    [Fact]
    public void ClearTraces_forgets_the_traces_and_keeps_tracing()
    {
        using RuntimeMemory runtime = Traced();
        void* a = runtime.Obj.Malloc(100);
        runtime.Tracer.ClearTraces();
        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal((0L, 0L), runtime.Tracer.GetTracedMemory());
        void* b = runtime.Obj.Malloc(200);
        Assert.Equal(1, runtime.Tracer.TracedBlocks);
        runtime.Obj.Free(a);
        runtime.Obj.Free(b);
        Assert.Equal(0, runtime.Tracer.TracedBlocks);
    }

    /// <summary>A hook below the tracer that allocates through another domain on every call (as a hook that logs might).</summary>
    private sealed class AllocatesInRawHook(RuntimeMemory runtime) : MemoryHook
    {
        public readonly List<nint> Side = [];

        public override void* Malloc(nuint size)
        {
            Side.Add((nint)runtime.Raw.Malloc(8));
            return Inner.Malloc(size);
        }
    }

    [Fact]
    public void A_block_is_traced_once_when_one_domain_calls_another()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        var nested = new AllocatesInRawHook(runtime);
        runtime.Obj.InstallHook(nested);
        runtime.Tracer.Start();
        void* p = runtime.Obj.Malloc(40);

        Assert.Equal(1, runtime.Tracer.TracedBlocks);       // the obj block, not the raw block made inside its call
        Assert.NotNull(runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, p));
        Assert.Null(runtime.Tracer.GetTraceback(MemoryDomainKind.Raw, (void*)nested.Side[0]));
        void* direct = runtime.Raw.Malloc(8);                // a raw call of its own is traced
        Assert.Equal(2, runtime.Tracer.TracedBlocks);
        runtime.Raw.Free(direct);
        runtime.Obj.Free(p);
        foreach (nint side in nested.Side)
        {
            runtime.Raw.Free((void*)side);
        }
    }

    /// <summary>A hook below the tracer that frees a given block of another domain inside its own call.</summary>
    private sealed class FreesInRawHook(RuntimeMemory runtime) : MemoryHook
    {
        public nint ToFree;

        public override void* Malloc(nuint size)
        {
            runtime.Raw.Free((void*)Interlocked.Exchange(ref ToFree, 0));
            return Inner.Malloc(size);
        }
    }

    [Fact]
    public void A_free_made_inside_another_traced_call_still_drops_the_trace()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        var nested = new FreesInRawHook(runtime);
        runtime.Obj.InstallHook(nested);
        runtime.Tracer.Start();
        void* raw = runtime.Raw.Malloc(100);
        Assert.NotNull(runtime.Tracer.GetTraceback(MemoryDomainKind.Raw, raw));
        nested.ToFree = (nint)raw;

        void* obj = runtime.Obj.Malloc(40); // frees the raw block from inside the obj call

        Assert.Equal(1, runtime.Tracer.TracedBlocks);
        Assert.Equal(40, runtime.Tracer.GetTracedMemory().Current);
        runtime.Obj.Free(obj);
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
    }

    [Fact]
    public void Snapshots_taken_while_other_threads_free_hold_only_real_traces()
    {
        using RuntimeMemory runtime = Traced(frames: 1);
        var made = new nint[4][];
        for (int t = 0; t < made.Length; t++)
        {
            using (At($"t{t}.lua", 1))
            {
                made[t] = Enumerable.Range(0, 20_000).Select(i => (nint)runtime.Obj.Malloc((nuint)(16 + (i % 400)))).ToArray();
            }
        }

        var freeing = made.Select(blocks => new Thread(() =>
        {
            foreach (nint p in blocks)
            {
                runtime.Obj.Free((void*)p);
            }
        })).ToArray();
        foreach (Thread thread in freeing)
        {
            thread.Start();
        }

        int snapshots = 0;
        while (freeing.Any(t => t.IsAlive) || snapshots < 3)
        {
            TraceSnapshot snapshot = runtime.Tracer.TakeSnapshot();
            Assert.All(snapshot.Traces, trace =>
            {
                Assert.InRange(trace.Size, 16, 415);
                Assert.Matches(@"^t\d\.lua$", trace.Traceback.MostRecent.File);
            });
            snapshots++;
        }

        foreach (Thread thread in freeing)
        {
            thread.Join();
        }

        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
    }

    [Fact]
    public void ClearTraces_while_threads_allocate_and_free_leaves_traced_memory_exact()
    {
        using RuntimeMemory runtime = Traced();
        var churn = Churn.Start(runtime.Obj, threads: 3, maxSize: 600, keep: 100);

        for (int i = 0; i < 300; i++)
        {
            runtime.Tracer.ClearTraces();
            Thread.Yield();
        }

        churn.Stop();

        // Every block is freed: whatever ClearTraces took or left, what is traced now must be nothing, exactly.
        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
        void* p = runtime.Obj.Malloc(300);
        Assert.Equal(300, runtime.Tracer.GetTracedMemory().Current);
        runtime.Obj.Free(p);
    }

    /// <summary>Threads that allocate and free in a domain (each keeping its last few blocks) until stopped, then free the rest.</summary>
    private sealed class Churn
    {
        private readonly CancellationTokenSource _stop = new();
        private Thread[] _threads = [];

        public static Churn Start(MemoryDomain domain, int threads, int maxSize, int keep)
        {
            var churn = new Churn();
            churn._threads = Enumerable.Range(0, threads).Select(w => new Thread(() => churn.Run(domain, new Random(w), maxSize, keep))).ToArray();
            foreach (Thread thread in churn._threads)
            {
                thread.Start();
            }

            return churn;
        }

        private void Run(MemoryDomain domain, Random random, int maxSize, int keep)
        {
            var live = new Queue<nint>();
            while (!_stop.IsCancellationRequested)
            {
                live.Enqueue((nint)domain.Malloc((nuint)random.Next(1, maxSize)));
                if (live.Count > keep)
                {
                    domain.Free((void*)live.Dequeue());
                }
            }

            while (live.Count > 0)
            {
                domain.Free((void*)live.Dequeue());
            }
        }

        /// <summary>Stops the threads and waits until each has freed its blocks.</summary>
        public void Stop()
        {
            _stop.Cancel();
            foreach (Thread thread in _threads)
            {
                thread.Join();
            }

            _stop.Dispose();
        }
    }

    private sealed class ThrowingProvider : IFrameProvider
    {
        public int GetFrames(Span<Frame> frames, out int totalFrames) => throw new InvalidOperationException("provider bug");
    }

    [Fact]
    public void A_provider_that_fails_never_fails_the_allocation_the_block_is_traced_as_unknown()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        runtime.Tracer.FrameProvider = new ThrowingProvider();
        runtime.Tracer.Start();
        void* p = runtime.Obj.Malloc(16);
        Assert.True(p != null);
        Assert.Equal(Frame.Unknown, runtime.Tracer.GetTraceback(p)!.MostRecent);
        Assert.Null(runtime.Obj.LastFault);
        runtime.Obj.Free(p);
    }

    [Fact]
    public void The_default_provider_names_the_managed_caller()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        runtime.Tracer.Start(frames: 3);
        void* p = runtime.Obj.Malloc(16);
        Traceback tb = runtime.Tracer.GetTraceback(p)!;
        Assert.Contains(nameof(The_default_provider_names_the_managed_caller), tb.MostRecent.Function);
        Assert.EndsWith("MemoryTracerTests.cs", tb.MostRecent.File);
        runtime.Obj.Free(p);
    }

    [Fact]
    public void Track_and_untrack_trace_memory_the_runtime_did_not_allocate_in_a_numbered_domain()
    {
        using RuntimeMemory runtime = Traced();
        using (At("ext.c", 12))
        {
            Assert.Equal(0, runtime.Tracer.Track(7, 0x10_0000, 4096));
            Assert.Equal(0, runtime.Tracer.Track(7, 0x10_0000, 8192)); // again: the trace is updated
        }

        TraceSnapshot snapshot = runtime.Tracer.TakeSnapshot();
        Trace trace = Assert.Single(snapshot.Traces);
        Assert.Equal((7u, 8192L, new Frame("ext.c", 12)), (trace.Domain, trace.Size, trace.Traceback.MostRecent));
        Assert.Equal(8192, runtime.Tracer.GetTracedMemory().Current);
        Assert.Single(snapshot.Filter([new TraceFilter(true, "*", Domain: 7)]).Traces);
        Assert.Empty(snapshot.Filter([new TraceFilter(false, "*", Domain: 7)]).Traces);
        Assert.Equal(0, runtime.Tracer.Untrack(7, 0x10_0000));
        Assert.Equal(0, runtime.Tracer.Untrack(7, 0x10_0000)); // not traced: nothing happens
        Assert.Equal(0, runtime.Tracer.TracedBlocks);
    }

    [Fact]
    public void Tracing_under_concurrent_allocation_and_cross_thread_frees_stays_exact()
    {
        using RuntimeMemory runtime = Traced(frames: 2);
        const int Threads = 4, PerThread = 20_000;
        var made = new nint[Threads][];
        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            using (At($"worker{t}.lua", t + 1))
            {
                made[t] = new nint[PerThread];
                for (int i = 0; i < PerThread; i++)
                {
                    made[t][i] = (nint)runtime[(MemoryDomainKind)(i % 3)].Malloc((nuint)(1 + (i % 600)));
                }
            }
        });

        Assert.Equal(Threads * PerThread, runtime.Tracer.TracedBlocks);
        long expected = Threads * Enumerable.Range(0, PerThread).Sum(i => 1L + (i % 600));
        Assert.Equal(expected, runtime.Tracer.GetTracedMemory().Current);

        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            nint[] other = made[(t + 1) % Threads]; // every thread frees the blocks of the next one
            for (int i = 0; i < PerThread; i += 2)
            {
                runtime[(MemoryDomainKind)(i % 3)].Free((void*)other[i]);
            }
        });

        TraceSnapshot snapshot = runtime.Tracer.TakeSnapshot();
        Assert.Equal(Threads * PerThread / 2, snapshot.Traces.Count);
        Assert.Equal(Enumerable.Range(0, Threads).Select(t => $"worker{t}.lua:{t + 1}"),
            snapshot.Statistics(TraceGrouping.Line).Select(s => s.Traceback.ToString()).Order());
        Assert.All(snapshot.Statistics(TraceGrouping.Line), s => Assert.Equal(PerThread / 2, s.Count));
        for (int t = 0; t < Threads; t++)
        {
            for (int i = 1; i < PerThread; i += 2)
            {
                runtime[(MemoryDomainKind)(i % 3)].Free((void*)made[t][i]);
            }
        }

        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
        Assert.Equal(0, runtime.GetStatistics().LiveBlocks);
    }

    [Fact]
    public void Sampled_traces_are_dropped_by_frees_from_any_thread_and_the_table_ends_empty()
    {
        using RuntimeMemory runtime = Traced(sampleBytes: 4096); // many samples live at once: frees go to the stripes
        const int Threads = 4, PerThread = 20_000;
        var made = new nint[Threads][];
        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            using (At($"worker{t}.lua", t + 1))
            {
                made[t] = new nint[PerThread];
                for (int i = 0; i < PerThread; i++)
                {
                    made[t][i] = (nint)runtime[(MemoryDomainKind)(i % 3)].Malloc((nuint)(1 + (i % 600)));
                }
            }
        });

        int sampled = runtime.Tracer.TracedBlocks;
        Assert.InRange(sampled, 500, Threads * PerThread / 2); // ~6 MB in 4 KiB samples: about 1,400
        Parallel.For(0, Threads, new ParallelOptions { MaxDegreeOfParallelism = Threads }, t =>
        {
            nint[] other = made[(t + 1) % Threads]; // every thread frees the blocks of the next one
            for (int i = 0; i < PerThread; i++)
            {
                runtime[(MemoryDomainKind)(i % 3)].Free((void*)other[i]);
            }
        });

        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
        Assert.Equal(0, runtime.GetStatistics().LiveBlocks);
    }

    [Fact]
    public void Starting_and_stopping_while_other_threads_allocate_corrupts_nothing()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        runtime.Tracer.FrameProvider = new ThreadFrameStack();
        var churn = Churn.Start(runtime.Obj, threads: 3, maxSize: 700, keep: 64);

        for (int i = 0; i < 200; i++)
        {
            runtime.Tracer.Start(frames: 1 + (i % 3));
            Thread.Yield();
            runtime.Tracer.TakeSnapshot();
            runtime.Tracer.Stop();
        }

        churn.Stop();

        Assert.Equal(0, runtime.Obj.LiveBlocks);
        Assert.Null(runtime.Obj.LastFault);
        runtime.Tracer.Start();
        Assert.Equal(0, runtime.Tracer.TracedBlocks); // nothing stale from the sessions before
        var blocks = Enumerable.Range(1, 10).Select(i => (nint)runtime.Obj.Malloc((nuint)(i * 10))).ToArray();
        Assert.Equal((550L, 550L), runtime.Tracer.GetTracedMemory()); // exact again: no drift carried over
        foreach (nint b in blocks)
        {
            runtime.Obj.Free((void*)b);
        }

        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
    }

    [Fact]
    public void Sampling_traces_a_fraction_of_the_blocks_and_estimates_the_totals()
    {
        using RuntimeMemory runtime = Traced(sampleBytes: 4096);
        Assert.Equal(4096, runtime.Tracer.SampleBytes);
        const int Blocks = 100_000;
        var made = new nint[Blocks];
        using (At("hot.lua", 3))
        {
            for (int i = 0; i < Blocks; i++)
            {
                made[i] = (nint)runtime.Obj.Malloc(64);
            }
        }

        long actual = Blocks * 64L;
        (long estimated, _) = runtime.Tracer.GetTracedMemory();
        // ~1,560 samples: the estimate's standard error is ~2.5%, so 12% is about five of them.
        Assert.InRange(estimated, actual * 88 / 100, actual * 112 / 100);
        Assert.InRange(runtime.Tracer.TracedBlocks, 1_000, 2_200);
        TraceStatistic stat = Assert.Single(runtime.Tracer.TakeSnapshot().Statistics(TraceGrouping.Line));
        Assert.InRange(stat.Count, Blocks * 88 / 100, Blocks * 112 / 100);
        foreach (nint p in made)
        {
            runtime.Obj.Free((void*)p);
        }

        Assert.Equal(0, runtime.Tracer.TracedBlocks);
        Assert.Equal(0, runtime.Tracer.GetTracedMemory().Current);
    }

    [Theory]
    [InlineData(4096)]   // blocks as big as the interval: sampled with p = 1 - 1/e, counted 1/p = 1.58 each
    [InlineData(6000)]
    [InlineData(100)]
    public void Sampled_counts_and_sizes_are_unbiased_for_any_block_size(int size)
    {
        using RuntimeMemory runtime = Traced(AllocatorNames.Malloc, sampleBytes: 4096);
        int blocks = 40_000_000 / Math.Max(size, 2000); // enough samples for a tight bound at every size
        var made = new nint[blocks];
        using (At("mixed.lua", 1))
        {
            for (int i = 0; i < blocks; i++)
            {
                made[i] = (nint)runtime.Raw.Malloc((nuint)size);
            }
        }

        TraceStatistic stat = Assert.Single(runtime.Tracer.TakeSnapshot().Statistics(TraceGrouping.Line));
        Assert.InRange(stat.Count, blocks * 90L / 100, blocks * 110L / 100);
        Assert.InRange(stat.Size, (long)blocks * size * 90 / 100, (long)blocks * size * 110 / 100);
        foreach (nint p in made)
        {
            runtime.Raw.Free((void*)p);
        }
    }

    [Fact]
    public void A_debug_violation_report_names_where_the_block_was_allocated()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Throw);
        runtime.Tracer.FrameProvider = new ThreadFrameStack();
        runtime.Tracer.Start(frames: 2);
        byte* p;
        using (At("game.lua", 40, "spawn"))
        using (At("pool.lua", 9, "take"))
        {
            p = (byte*)runtime.Obj.Malloc(24);
        }

        p[24] = 0x42; // one past the end
        var violation = Assert.Throws<MemoryViolationException>(() => runtime.Obj.Free(p));
        Assert.Contains("Memory block allocated at (most recent call first):\n  File \"pool.lua\", line 9\n    in take\n  File \"game.lua\", line 40\n    in spawn", violation.Message);
        Assert.Equal(new Frame("pool.lua", 9, "take"), runtime.Tracer.GetTraceback(p)!.MostRecent); // refused: still live, still traced
        Assert.Equal(1, runtime.Tracer.TracedBlocks);
        Assert.Null(runtime.Tracer.GetTraceback(p + 4096)); // nothing left over from the release that threw
    }

    [Fact]
    public void The_leak_report_groups_live_blocks_by_traceback_largest_first_and_is_logged_on_dispose()
    {
        var logs = new FakeLoggerProvider();
        using var factory = LoggerFactory.Create(b => b.AddProvider(logs));
        var options = new RuntimeMemoryOptions { Allocator = AllocatorNames.Pymalloc, Tracing = { Enabled = true, Frames = 2, LeakReportOnDispose = true } };
        var runtime = new RuntimeMemory(new DefaultAllocatorProvider(options), options, factory);
        runtime.Tracer.FrameProvider = new ThreadFrameStack();
        using (At("main.lua", 1))
        {
            using (At("cache.lua", 20, "fill"))
            {
                for (int i = 0; i < 3; i++)
                {
                    runtime.Mem.Malloc(1000);
                }
            }

            runtime.Obj.Malloc(50);
        }

        string report = runtime.Tracer.FormatLeakReport();
        TextSnapshot.Verify(report);
        runtime.Dispose();
        FakeLogRecord record = Assert.Single(logs.Collector.GetSnapshot(), r => r.Id.Id == 4101);
        Assert.Equal(LogLevel.Warning, record.Level);
        Assert.Equal(report, record.Message);
    }

    [Fact]
    public void Configuration_starts_tracing_and_bad_values_are_rejected_naming_key_value_and_allowed_values()
    {
        using (ServiceProvider services = Provider(("Tracing:Enabled", "true"), ("Tracing:Frames", "5"), ("Tracing:SampleBytes", "0")))
        {
            var runtime = services.GetRequiredService<IRuntimeMemory>();
            Assert.True(((RuntimeMemory)runtime).Tracer.IsTracing);
            Assert.Equal(5, ((RuntimeMemory)runtime).Tracer.TracebackLimit);
        }

        (string Key, string Value, string Expected)[] bad =
        [
            ("Tracing:Frames", "0", "RuntimeMemory:Tracing:Frames = '0': not a frame count. Allowed values: an integer from 1 to 65535."),
            ("Tracing:Frames", "65536", "RuntimeMemory:Tracing:Frames = '65536': not a frame count. Allowed values: an integer from 1 to 65535."),
            ("Tracing:Frames", "many", "RuntimeMemory:Tracing:Frames = 'many': not a frame count."),
            ("Tracing:SampleBytes", "-1", "RuntimeMemory:Tracing:SampleBytes = '-1': not a sampling interval. Allowed values: 0 (trace every block) or a positive number of bytes."),
            ("Tracing:Enabled", "yes", "RuntimeMemory:Tracing:Enabled = 'yes': not a boolean. Allowed values: true, false."),
            ("Tracing:LeakReportOnDispose", "2", "RuntimeMemory:Tracing:LeakReportOnDispose = '2': not a boolean."),
            ("Tracing:Depth", "3", "RuntimeMemory:Tracing:Depth is not a setting of RuntimeMemory:Tracing. Allowed keys: Enabled, Frames, SampleBytes, LeakReportOnDispose."),
            ("Tracing", "on", "RuntimeMemory:Tracing = 'on': RuntimeMemory:Tracing must be a section with keys, not a value."),
        ];
        foreach ((string key, string value, string expected) in bad)
        {
            using ServiceProvider services = Provider((key, value));
            var error = Assert.Throws<OptionsValidationException>(() => services.GetRequiredService<IRuntimeMemory>());
            Assert.Contains(expected, error.Message);
        }

        var code = new RuntimeMemoryOptionsValidator().Validate(null, new RuntimeMemoryOptions { Tracing = { Frames = 0 } });
        Assert.Contains("RuntimeMemory:Tracing:Frames = '0'", code.FailureMessage);
    }

    private static ServiceProvider Provider(params (string Key, string Value)[] settings)
    {
        IConfiguration configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>("RuntimeMemory:" + s.Key, s.Value)))
            .Build();
        var services = new ServiceCollection();
        services.AddRuntimeMemory(configuration.GetSection("RuntimeMemory"));
        return services.BuildServiceProvider();
    }
}
