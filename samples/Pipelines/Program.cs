// A System.IO.Pipelines Pipe whose segments are blocks of the runtime's obj domain, from safe code (no unsafe block):
// the writer streams 8 MiB, the reader checks every byte, and the domain's statistics show the segments live while
// data is in flight and nothing live at the end.
//
//   dotnet run --project samples/Pipelines
using System.Buffers;
using System.IO.Pipelines;
using Runtime.Memory;
using Runtime.Memory.Buffers;
using Runtime.Memory.Diagnostics;

const long Total = 8L * 1024 * 1024;
const long ReportEvery = 2L * 1024 * 1024;

using RuntimeMemory runtime = RuntimeMemory.Create();
MemoryDomain obj = runtime.Obj;
Console.WriteLine($"before:  {Describe(obj)}");

var pipe = new Pipe(new PipeOptions(pool: obj.AsMemoryPool(), useSynchronizationContext: false));

Task writer = Task.Run(async () =>
{
    long position = 0;
    var random = new Random(1);
    while (position < Total)
    {
        int chunk = (int)Math.Min(random.Next(1, 6000), Total - position);
        Span<byte> span = pipe.Writer.GetSpan(chunk)[..chunk]; // a 4 KiB buffer rented from obj, or larger when asked
        for (int i = 0; i < chunk; i++)
        {
            span[i] = Pattern(position + i);
        }

        pipe.Writer.Advance(chunk);
        position += chunk;
        await pipe.Writer.FlushAsync();
    }

    await pipe.Writer.CompleteAsync();
});

long read = 0, nextReport = ReportEvery, mostLive = 0;
while (true)
{
    ReadResult result = await pipe.Reader.ReadAsync();
    ReadOnlySequence<byte> buffer = result.Buffer;
    mostLive = Math.Max(mostLive, obj.LiveBlocks);
    if (read + buffer.Length >= nextReport && !buffer.IsEmpty)
    {
        // The reader holds these segments: they are live blocks of obj until AdvanceTo gives them back.
        Console.WriteLine($"{(read + buffer.Length) / (1024 * 1024)} MiB:   {Describe(obj)}  (reader holds {buffer.Length:N0} bytes)");
        nextReport += ReportEvery;
    }

    foreach (ReadOnlyMemory<byte> segment in buffer)
    {
        ReadOnlySpan<byte> span = segment.Span;
        for (int i = 0; i < span.Length; i++)
        {
            if (span[i] != Pattern(read + i))
            {
                Console.Error.WriteLine($"byte {read + i:N0} is {span[i]}, expected {Pattern(read + i)}");
                return 1;
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
await writer;

DomainStatistics stats = obj.GetStatistics();
Console.WriteLine($"after:   {Describe(obj)}");
Console.WriteLine($"streamed {read:N0} bytes, every byte checked; {stats.Allocations:N0} buffers rented from obj ({stats.BytesAllocated:N0} bytes), at most {mostLive} live at once, peak {stats.PeakBytes:N0} bytes");
if (read != Total || stats.LiveBlocks != 0 || stats.LiveBytes != 0 || mostLive == 0)
{
    Console.Error.WriteLine("FAILED: the stream was short, or a buffer is still live, or none was ever seen live");
    return 1;
}

return 0;

static byte Pattern(long position) => (byte)(position * 131 + (position >> 10));

static string Describe(MemoryDomain domain) => $"obj: {domain.LiveBlocks:N0} live blocks, {domain.LiveBytes:N0} live bytes";
