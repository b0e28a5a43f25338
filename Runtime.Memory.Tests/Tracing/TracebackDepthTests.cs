using System.Runtime.CompilerServices;
using System.Text;
using Runtime.Memory.Tests.Infrastructure;
using Runtime.Memory.Tracing;
using static Runtime.Memory.Tests.Tracing.MemoryTracerTests;

namespace Runtime.Memory.Tests.Tracing;

/// <summary>
/// The total-frame figure at depth (issue 26, point 2): a provider examines at most the frames kept plus
/// <see cref="IFrameProvider.Lookahead"/> levels; the total is exact up to there and a lower bound beyond, so a traced
/// allocation costs the same at any depth and the same frames at any great depth are one traceback.
/// </summary>
public sealed unsafe class TracebackDepthTests
{
    /// <summary>Pushes <paramref name="depth"/> frames (<c>deep.lua</c>, lines 1 to depth) and runs <paramref name="body"/> on top.</summary>
    private static T AtDepth<T>(int depth, Func<T> body)
    {
        for (int i = 1; i <= depth; i++)
        {
            ThreadFrameStack.Push("deep.lua", i, "rec");
        }

        try
        {
            return body();
        }
        finally
        {
            for (int i = 0; i < depth; i++)
            {
                ThreadFrameStack.Pop();
            }
        }
    }

    [Fact]
    public void ThreadFrameStack_reports_the_exact_depth_up_to_kept_plus_lookahead_and_a_capped_figure_beyond()
    {
        var provider = new ThreadFrameStack();
        var frames = new Frame[3];
        int limit = frames.Length + IFrameProvider.Lookahead;
        foreach ((int depth, int expectedTotal) in new[] { (2, 2), (limit, limit), (limit + 1, limit + 1), (limit + 2, limit + 1), (100_000, limit + 1) })
        {
            (int written, int total) = AtDepth(depth, () => (provider.GetFrames(frames, out int t), t));
            Assert.Equal(Math.Min(depth, 3), written);
            Assert.Equal(expectedTotal, total);
            Assert.Equal(new Frame("deep.lua", depth, "rec"), frames[0]);
        }
    }

    [Theory]
    [InlineData(0L)]
    [InlineData(1L)] // sampled: every block of a byte or more is traced with probability 1 − e^(−size)
    public void Tracebacks_are_exact_when_shallow_and_lower_bounds_when_deep_one_per_frames_whatever_the_depth(long sampleBytes)
    {
        using RuntimeMemory runtime = Traced(frames: 2, sampleBytes: sampleBytes);
        int limit = 2 + IFrameProvider.Lookahead;
        Traceback TracebackAt(int depth) => AtDepth(depth, () =>
        {
            void* p = runtime.Obj.Malloc(64);
            Traceback tb = runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, p)!;
            runtime.Obj.Free(p);
            return tb;
        });

        Traceback shallow = TracebackAt(5);
        Assert.Equal((5, false, "5"), (shallow.TotalFrames, shallow.TotalFramesIsLowerBound, shallow.TotalFramesText));
        Traceback exact = TracebackAt(limit);
        Assert.Equal((limit, false), (exact.TotalFrames, exact.TotalFramesIsLowerBound));
        Traceback deeper = TracebackAt(limit + 1);
        Assert.Equal((limit + 1, true, $"{limit + 1}+"), (deeper.TotalFrames, deeper.TotalFramesIsLowerBound, deeper.TotalFramesText));

        // Frames pushed at lines 1..depth: the top two are (depth - 1, depth), so equal frames need equal depths; here the
        // same two frames sit on stacks 1,000 and 100,000 deep, and are one traceback.
        Traceback Top(int depth) => AtDepth(depth - 2, () =>
        {
            using (At("top.lua", 1, "f"))
            using (At("top.lua", 2, "g"))
            {
                void* p = runtime.Obj.Malloc(64);
                Traceback tb = runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, p)!;
                runtime.Obj.Free(p);
                return tb;
            }
        });

        Traceback thousand = Top(1000);
        Assert.Same(thousand, Top(100_000));
        Assert.Equal(["top.lua:1", "top.lua:2"], thousand.Frames.Select(f => f.ToString()));
        Assert.True(thousand.TotalFramesIsLowerBound);
    }

    /// <summary>A provider in tracemalloc's manner: it walks the whole stack and reports its exact depth.</summary>
    private sealed class ExactTotalProvider(int depth) : IFrameProvider
    {
        public int GetFrames(Span<Frame> frames, out int totalFrames)
        {
            frames[0] = new Frame("main.lua", 7, "main");
            totalFrames = depth;
            return 1;
        }
    }

    [Fact]
    public void The_tracer_caps_a_providers_exact_total_so_the_same_frames_at_great_depths_are_one_traceback()
    {
        using RuntimeMemory runtime = Traced(frames: 1);
        var tracebacks = new List<Traceback>();
        foreach (int depth in new[] { 30, 31, 1_000_000 })
        {
            runtime.Tracer.FrameProvider = new ExactTotalProvider(depth);
            void* p = runtime.Obj.Malloc(32);
            tracebacks.Add(runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, p)!);
            runtime.Obj.Free(p);
        }

        Assert.All(tracebacks, tb => Assert.Equal((1 + IFrameProvider.Lookahead + 1, true), (tb.TotalFrames, tb.TotalFramesIsLowerBound)));
        Assert.Single(tracebacks.Distinct());
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static Traceback ManagedAt(RuntimeMemory runtime, int depth)
    {
        if (depth > 0)
        {
            Traceback tb = ManagedAt(runtime, depth - 1);
            GC.KeepAlive(runtime); // not a tail call
            return tb;
        }

        void* p = runtime.Obj.Malloc(32);
        Traceback traceback = runtime.Tracer.GetTraceback(MemoryDomainKind.Obj, p)!;
        runtime.Obj.Free(p);
        return traceback;
    }

    [Fact]
    public void The_managed_stack_provider_reports_a_deep_stacks_total_as_a_lower_bound()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        runtime.Tracer.Start(frames: 2); // the default provider: the .NET stack
        Traceback deep = ManagedAt(runtime, 500);
        Assert.Equal(2, deep.Frames.Count);
        Assert.Equal((2 + IFrameProvider.Lookahead + 1, true), (deep.TotalFrames, deep.TotalFramesIsLowerBound));
        Assert.All(deep.Frames, f => Assert.Equal($"{nameof(TracebackDepthTests)}.{nameof(ManagedAt)}", f.Function));
        Assert.Same(deep, ManagedAt(runtime, 800)); // same frames, capped total: one traceback
    }

    [Fact]
    public void The_leak_report_says_when_a_stack_was_deeper_than_the_provider_looked()
    {
        using RuntimeMemory runtime = Traced(frames: 1);
        void* p = (void*)AtDepth(100, () => (nint)runtime.Obj.Malloc(100));
        void* q = (void*)AtDepth(3, () => (nint)runtime.Obj.Malloc(10));
        string report = runtime.Tracer.FormatLeakReport();
        Assert.Contains($"deep.lua:100: size=100 B, count=1\n  File \"deep.lua\", line 100\n    in rec\n  ... from a stack of {1 + IFrameProvider.Lookahead + 1}+ frames\n", report);
        Assert.Contains("deep.lua:3: size=10 B, count=1\n  File \"deep.lua\", line 3\n    in rec\n", report);
        Assert.DoesNotContain("deep.lua:3: size=10 B, count=1\n  File \"deep.lua\", line 3\n    in rec\n  ...", report);
        runtime.Obj.Free(p);
        runtime.Obj.Free(q);
    }

    [Fact]
    public void A_snapshot_file_keeps_whether_a_total_is_a_lower_bound_and_version_1_files_still_load()
    {
        string path = Path.GetTempFileName();
        try
        {
            var deep = new Traceback([new Frame("a.lua", 1, "f")], 18, totalFramesIsLowerBound: true);
            var shallow = new Traceback([new Frame("a.lua", 1, "f")], 18);
            Assert.NotEqual(deep, shallow);
            new TraceSnapshot([new Trace(2, 100, deep, 1), new Trace(2, 50, shallow, 1)], 1, 0).Dump(path);
            TraceSnapshot loaded = TraceSnapshot.Load(path);
            Assert.Equal([(18, true), (18, false)], loaded.Traces.Select(t => (t.Traceback.TotalFrames, t.Traceback.TotalFramesIsLowerBound)));

            File.WriteAllBytes(path, Version1File());
            Traceback old = Assert.Single(TraceSnapshot.Load(path).Traces).Traceback;
            Assert.Equal((3, false, "a.lua:7"), (old.TotalFrames, old.TotalFramesIsLowerBound, old.MostRecent.ToString()));
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>A version 1 snapshot file (no traceback flags): one trace of 10 bytes at a.lua:7, from a stack 3 deep.</summary>
    private static byte[] Version1File()
    {
        using var body = new MemoryStream();
        using (var w = new BinaryWriter(body, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(1); // traceback limit
            w.Write(0L); // sample bytes
            w.Write(1);
            w.Write("a.lua");
            w.Write(1); // tracebacks
            w.Write(3); // total frames, then (version 1) no flags
            w.Write(1);
            w.Write(0);
            w.Write(7);
            w.Write(-1);
            w.Write(1); // traces
            w.Write(2u);
            w.Write(10L);
            w.Write(1L);
            w.Write(0);
        }

        byte[] data = body.ToArray();
        ulong hash = 0xCBF2_9CE4_8422_2325UL;
        foreach (byte b in data)
        {
            hash = (hash ^ b) * 0x0000_0100_0000_01B3UL;
        }

        using var file = new MemoryStream();
        using (var w = new BinaryWriter(file))
        {
            w.Write("RTMTRACE"u8);
            w.Write((ushort)1);
            w.Write((ushort)0);
            w.Write((long)data.Length);
            w.Write(hash);
            w.Write(data);
        }

        return file.ToArray();
    }
}
