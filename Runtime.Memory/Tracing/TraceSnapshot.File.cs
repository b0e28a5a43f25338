using System.Text;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The snapshot file (<see cref="TraceSnapshot.Dump"/>, <see cref="TraceSnapshot.Load"/>). Little-endian throughout:
/// <code>
/// header  "RTMTRACE" (8) | version u16 = 2 | reserved u16 = 0 | body length i64 | body FNV-1a 64 u64
/// body    traceback limit i32 | sample bytes i64
///         names:      count i32, then each a length-prefixed UTF-8 string (BinaryWriter)
///         tracebacks: count i32, then each total frames i32 | flags u8 | frame count i32 | frames (file i32 | line i32 | function i32, −1 = none)
///         traces:     count i32, then each domain u32 | size i64 | count i64 | traceback i32
/// </code>
/// The traceback flags (version 2) have bit 0 for <see cref="Traceback.TotalFramesIsLowerBound"/>, the other bits 0.
/// Version 1 (no flags byte: every total exact) is still read.
/// Every index is checked on load; a file that is not a snapshot, of another version, truncated or damaged is refused
/// with an <see cref="InvalidDataException"/> that says which.
/// </summary>
public sealed partial class TraceSnapshot
{
    private static readonly byte[] Magic = "RTMTRACE"u8.ToArray();

    /// <summary>The file format version this build writes (it reads this one and version 1).</summary>
    public const ushort FileVersion = 2;

    /// <summary>The first version, without the traceback flags; still read.</summary>
    private const ushort FileVersion1 = 1;

    /// <summary>Writes the snapshot to <paramref name="path"/> (tracemalloc's <c>Snapshot.dump</c>).</summary>
    public void Dump(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var names = new Dictionary<string, int>(StringComparer.Ordinal);
        var tracebacks = new Dictionary<Traceback, int>();
        foreach (Trace trace in _traces)
        {
            if (!tracebacks.ContainsKey(trace.Traceback))
            {
                tracebacks[trace.Traceback] = tracebacks.Count;
                foreach (Frame frame in trace.Traceback.Frames)
                {
                    names.TryAdd(frame.File, names.Count);
                    if (frame.Function is { } function)
                    {
                        names.TryAdd(function, names.Count);
                    }
                }
            }
        }

        using var body = new MemoryStream();
        using (var w = new BinaryWriter(body, Encoding.UTF8, leaveOpen: true))
        {
            w.Write(TracebackLimit);
            w.Write(SampleBytes);
            w.Write(names.Count);
            foreach (string name in names.OrderBy(n => n.Value).Select(n => n.Key))
            {
                w.Write(name);
            }

            w.Write(tracebacks.Count);
            foreach (Traceback tb in tracebacks.OrderBy(t => t.Value).Select(t => t.Key))
            {
                w.Write(tb.TotalFrames);
                w.Write((byte)(tb.TotalFramesIsLowerBound ? 1 : 0));
                w.Write(tb.Frames.Count);
                foreach (Frame frame in tb.Frames)
                {
                    w.Write(names[frame.File]);
                    w.Write(frame.Line);
                    w.Write(frame.Function is { } f ? names[f] : -1);
                }
            }

            w.Write(_traces.Length);
            foreach (Trace trace in _traces)
            {
                w.Write(trace.Domain);
                w.Write(trace.Size);
                w.Write(trace.Count);
                w.Write(tracebacks[trace.Traceback]);
            }
        }

        using FileStream file = File.Create(path);
        using var header = new BinaryWriter(file);
        header.Write(Magic);
        header.Write(FileVersion);
        header.Write((ushort)0);
        header.Write(body.Length);
        header.Write(Fnv1a(body.GetBuffer().AsSpan(0, (int)body.Length)));
        header.Write(body.GetBuffer(), 0, (int)body.Length);
    }

    /// <summary>Reads a snapshot written by <see cref="Dump"/> (tracemalloc's <c>Snapshot.load</c>).</summary>
    /// <exception cref="InvalidDataException">The file is not a snapshot, has another version, or is truncated or damaged.</exception>
    public static TraceSnapshot Load(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        byte[] bytes = File.ReadAllBytes(path);
        const int HeaderSize = 8 + 2 + 2 + 8 + 8;
        if (bytes.Length < 8 || !bytes.AsSpan(0, 8).SequenceEqual(Magic))
        {
            throw new InvalidDataException($"{path} is not a RuntimeMem trace snapshot (it does not start with \"RTMTRACE\").");
        }

        if (bytes.Length < HeaderSize)
        {
            throw new InvalidDataException($"{path} is truncated: {bytes.Length} bytes, shorter than the {HeaderSize}-byte header.");
        }

        ushort version = BitConverter.ToUInt16(bytes, 8);
        if (version is not (FileVersion or FileVersion1))
        {
            throw new InvalidDataException($"{path} is a trace snapshot of format version {version}; this build reads versions {FileVersion1} and {FileVersion}.");
        }

        long length = BitConverter.ToInt64(bytes, 12);
        ulong checksum = BitConverter.ToUInt64(bytes, 20);
        if (length < 0 || bytes.Length - HeaderSize != length)
        {
            throw new InvalidDataException($"{path} is truncated or damaged: its header announces {length} bytes of traces, the file holds {bytes.Length - HeaderSize}.");
        }

        ReadOnlySpan<byte> bodyBytes = bytes.AsSpan(HeaderSize);
        if (Fnv1a(bodyBytes) != checksum)
        {
            throw new InvalidDataException($"{path} is damaged: its checksum does not match its contents.");
        }

        try
        {
            using var r = new BinaryReader(new MemoryStream(bytes, HeaderSize, (int)length), Encoding.UTF8);
            int limit = r.ReadInt32();
            long sampleBytes = r.ReadInt64();
            var names = new string[Count(r, r.ReadInt32(), "names", 1)];
            for (int i = 0; i < names.Length; i++)
            {
                names[i] = r.ReadString();
            }

            var tracebacks = new Traceback[Count(r, r.ReadInt32(), "tracebacks", 8)];
            for (int i = 0; i < tracebacks.Length; i++)
            {
                int total = r.ReadInt32();
                byte flags = version == FileVersion1 ? (byte)0 : r.ReadByte();
                if ((flags & ~1) != 0)
                {
                    throw new InvalidDataException($"traceback flags 0x{flags:X2}, of which only bit 0 is defined");
                }

                var frames = new Frame[Count(r, r.ReadInt32(), "frames", 12)];
                for (int f = 0; f < frames.Length; f++)
                {
                    string file = names[Index(r.ReadInt32(), names.Length, "name")];
                    int line = r.ReadInt32();
                    int function = r.ReadInt32();
                    frames[f] = new Frame(file, line, function == -1 ? null : names[Index(function, names.Length, "name")]);
                }

                tracebacks[i] = new Traceback(frames, total, totalFramesIsLowerBound: (flags & 1) != 0);
            }

            var traces = new Trace[Count(r, r.ReadInt32(), "traces", 24)];
            for (int i = 0; i < traces.Length; i++)
            {
                uint domain = r.ReadUInt32();
                long size = r.ReadInt64();
                long count = r.ReadInt64();
                traces[i] = new Trace(domain, size, tracebacks[Index(r.ReadInt32(), tracebacks.Length, "traceback")], count);
            }

            if (r.BaseStream.Position != length)
            {
                throw new InvalidDataException($"{length - r.BaseStream.Position} bytes follow the last trace.");
            }

            return new TraceSnapshot(traces, limit, sampleBytes);
        }
        catch (Exception ex) when (ex is EndOfStreamException or InvalidDataException or FormatException or ArgumentException)
        {
            throw new InvalidDataException($"{path} is damaged: {ex.Message}", ex);
        }

        // A count must fit the bytes left (each element takes at least minBytes), so a damaged count cannot make the
        // loader allocate more than the file could describe.
        static int Count(BinaryReader r, int n, string what, int minBytes) =>
            n >= 0 && n <= (r.BaseStream.Length - r.BaseStream.Position) / minBytes
                ? n
                : throw new InvalidDataException($"a count of {what} of {n}, more than the {r.BaseStream.Length - r.BaseStream.Position} bytes left can hold");

        static int Index(int i, int count, string what) =>
            (uint)i < (uint)count ? i : throw new InvalidDataException($"a {what} index {i} outside 0..{count - 1}");
    }

    private static ulong Fnv1a(ReadOnlySpan<byte> data)
    {
        ulong hash = 0xCBF2_9CE4_8422_2325UL;
        foreach (byte b in data)
        {
            hash = (hash ^ b) * 0x0000_0100_0000_01B3UL;
        }

        return hash;
    }
}
