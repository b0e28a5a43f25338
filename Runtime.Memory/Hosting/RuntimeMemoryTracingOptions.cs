namespace Runtime.Memory.Hosting;

/// <summary>
/// Settings of allocation tracing, bound from <c>RuntimeMemory:Tracing</c> (tracemalloc's <c>PYTHONTRACEMALLOC</c>).
/// </summary>
/// <remarks>
/// <code>
/// { "RuntimeMemory": { "Tracing": { "Enabled": true, "Frames": 5, "SampleBytes": 0, "LeakReportOnDispose": false } } }
/// </code>
/// </remarks>
public sealed class RuntimeMemoryTracingOptions
{
    /// <summary>The most frames a traceback keeps.</summary>
    public const int MaxFrames = Tracing.MemoryTracer.MaxFrames;

    /// <summary>Start tracing when the service is created. Default false.</summary>
    public bool Enabled { get; set; }

    /// <summary>Frames kept per traceback, 1 to 65535. Default 1.</summary>
    public int Frames { get; set; } = 1;

    /// <summary>
    /// 0 (the default) traces every block; N &gt; 0 traces a random sample of one block per N bytes allocated on average,
    /// with sizes and counts scaled to estimates (for production use).
    /// </summary>
    public long SampleBytes { get; set; }

    /// <summary>When the service is disposed while tracing, log the blocks still live, grouped by traceback. Default false.</summary>
    public bool LeakReportOnDispose { get; set; }
}
