using System.Buffers;
using System.IO.Pipelines;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Runtime.Memory.Buffers;
using Runtime.Memory.Diagnostics;

namespace Runtime.Memory.Tests.Buffers;

/// <summary>
/// A <see cref="Pipe"/> on a domain's pool: its segments are the domain's blocks, live while data is in flight (in the
/// statistics and the metrics), and all given back once both ends complete.
/// </summary>
public sealed class PipelinesTests
{
    private const int TotalBytes = 4 * 1024 * 1024 + 12_345;

    private static byte Expected(long position) => (byte)(position * 31 + (position >> 12));

    [Fact]
    public async Task Streaming_4_MiB_through_a_pipe_on_the_obj_pool_keeps_the_content_and_leaves_nothing_live()
    {
        var services = new ServiceCollection();
        services.AddMetrics();
        using ServiceProvider container = services.BuildServiceProvider();
        using RuntimeMemory runtime = RuntimeMemory.Create();
        runtime.EnableMetrics(container.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>());
        using var blockCount = new MetricCollector<long>(container.GetRequiredService<System.Diagnostics.Metrics.IMeterFactory>(), RuntimeMemoryMetrics.MeterName, "runtime.memory.block.count");
        long baselineBlocks = runtime.Obj.LiveBlocks, baselineBytes = runtime.Obj.LiveBytes;

        var pipe = new Pipe(new PipeOptions(pool: runtime.Obj.AsMemoryPool(), useSynchronizationContext: false));
        Task writing = Task.Run(async () =>
        {
            var rng = new Random(5);
            long position = 0;
            while (position < TotalBytes)
            {
                int chunk = (int)Math.Min(rng.Next(1, 9000), TotalBytes - position);
                Memory<byte> memory = pipe.Writer.GetMemory(chunk);
                Span<byte> span = memory.Span[..chunk];
                for (int i = 0; i < chunk; i++)
                {
                    span[i] = Expected(position + i);
                }

                pipe.Writer.Advance(chunk);
                position += chunk;
                FlushResult flushed = await pipe.Writer.FlushAsync();
                Assert.False(flushed.IsCanceled);
            }

            await pipe.Writer.CompleteAsync();
        });

        long read = 0, mostLiveBlocks = 0, mostObservedBlocks = 0;
        while (true)
        {
            ReadResult result = await pipe.Reader.ReadAsync();
            ReadOnlySequence<byte> buffer = result.Buffer;
            if (!buffer.IsEmpty)
            {
                // The buffer being read is made of pool buffers the reader has not released: live blocks of obj.
                mostLiveBlocks = Math.Max(mostLiveBlocks, runtime.Obj.LiveBlocks - baselineBlocks);
                if (read < TotalBytes / 2 && mostObservedBlocks == 0)
                {
                    blockCount.Clear();
                    blockCount.RecordObservableInstruments();
                    mostObservedBlocks = blockCount.GetMeasurementSnapshot().Single(m => (string)m.Tags[RuntimeMemoryMetrics.DomainTag]! == "obj").Value - baselineBlocks;
                }
            }

            foreach (ReadOnlyMemory<byte> segment in buffer)
            {
                ReadOnlySpan<byte> span = segment.Span;
                for (int i = 0; i < span.Length; i++)
                {
                    if (span[i] != Expected(read + i))
                    {
                        Assert.Fail($"byte {read + i}: {span[i]}, expected {Expected(read + i)}");
                    }
                }

                read += span.Length;
            }

            pipe.Reader.AdvanceTo(buffer.End);
            if (result.IsCompleted)
            {
                break;
            }
        }

        await pipe.Reader.CompleteAsync();
        await writing;

        Assert.Equal(TotalBytes, read);
        Assert.True(mostLiveBlocks >= 1, "no block of the pool was live while the reader held data");
        Assert.True(mostObservedBlocks >= 1, $"the metrics saw {mostObservedBlocks} blocks of obj in flight");
        DomainStatistics stats = runtime.Obj.GetStatistics();
        // Every byte written went through a rented segment (of 4 KiB, or the size asked for when larger).
        Assert.True(stats.BytesAllocated >= TotalBytes, $"only {stats.BytesAllocated:N0} bytes allocated for {TotalBytes:N0} streamed: the pipe did not use the pool");
        Assert.True(stats.Allocations >= TotalBytes / 9000, $"only {stats.Allocations} blocks for {TotalBytes:N0} bytes");
        Assert.Equal(baselineBlocks, stats.LiveBlocks);
        Assert.Equal(baselineBytes, stats.LiveBytes);

        blockCount.Clear();
        blockCount.RecordObservableInstruments();
        Assert.Equal(0, blockCount.GetMeasurementSnapshot().Single(m => (string)m.Tags[RuntimeMemoryMetrics.DomainTag]! == "obj").Value);
    }
}
