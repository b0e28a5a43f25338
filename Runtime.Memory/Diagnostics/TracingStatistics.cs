namespace Runtime.Memory.Diagnostics;

/// <summary>The tracer at one moment (<see cref="Tracing.MemoryTracer"/>).</summary>
/// <param name="IsTracing">Whether tracing runs.</param>
/// <param name="Frames">Frames kept per traceback (0 when off).</param>
/// <param name="SampleBytes">The sampling interval (0: every block traced).</param>
/// <param name="TracedBlocks">Blocks traced now.</param>
/// <param name="TracedBytes">Traced memory now (tracemalloc's <c>get_traced_memory()[0]</c>).</param>
/// <param name="PeakTracedBytes">Peak traced memory since tracing started or the peak was reset.</param>
/// <param name="TracingMemory">Bytes the tracing itself uses.</param>
/// <param name="TraceFailures">Traces that could not be stored (their blocks were served untraced).</param>
public sealed record TracingStatistics(
    bool IsTracing, int Frames, long SampleBytes, long TracedBlocks, long TracedBytes, long PeakTracedBytes, long TracingMemory, long TraceFailures)
{
    /// <summary>Tracing off.</summary>
    public static TracingStatistics Off { get; } = new(false, 0, 0, 0, 0, 0, 0, 0);
}
