using Runtime.Memory.Tracing;

namespace Runtime.Memory.Benchmarks;

/// <summary>The tracing rows' runtimes: tracing with 1 frame from a provider that costs what an interpreter's does.</summary>
internal static class TracingSetup
{
    /// <summary>The sampling rows' interval: one traced block per 512 KiB allocated on average (Go's heap profiler's rate).</summary>
    public const long SampleBytes = 512 * 1024;

    /// <summary>An interpreter's provider at its cheapest: the current frame is at hand (here, always the same line).</summary>
    private sealed class CurrentLineProvider : IFrameProvider
    {
        private static readonly Frame Current = new("bench.lua", 42, "loop");

        public int GetFrames(Span<Frame> frames, out int totalFrames)
        {
            frames[0] = Current;
            totalFrames = 1;
            return 1;
        }
    }

    [ThreadStatic]
    private static bool t_inBenchFrame;

    /// <summary>
    /// A runtime tracing with 1 frame: by default from <see cref="ThreadFrameStack"/>, the provider an interpreter
    /// drives (the calling thread, which runs the benchmark, enters <c>bench.lua:42</c> once); with
    /// <paramref name="customProvider"/>, from an <see cref="IFrameProvider"/> of the benchmark's own, which the tracer
    /// calls on every traced allocation.
    /// </summary>
    public static RuntimeMemory Traced(long sampleBytes = 0, bool customProvider = false)
    {
        RuntimeMemory runtime = RuntimeMemory.Create();
        if (customProvider)
        {
            runtime.Tracer.FrameProvider = new CurrentLineProvider();
        }
        else
        {
            runtime.Tracer.FrameProvider = new ThreadFrameStack();
            EnterBenchFrame();
        }

        runtime.Tracer.Start(frames: 1, sampleBytes);
        return runtime;
    }

    /// <summary>Enters <c>bench.lua:42</c> on the calling thread once: the tracing rows call it on each invocation, in
    /// case the benchmark runs on another thread than its setup (one thread-static check per 1,000 pairs).</summary>
    public static void EnterBenchFrame()
    {
        if (!t_inBenchFrame)
        {
            ThreadFrameStack.Push("bench.lua", 42, "loop");
            t_inBenchFrame = true;
        }
    }
}
