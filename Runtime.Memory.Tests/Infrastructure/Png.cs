using System.Buffers.Binary;
using System.IO.Compression;

namespace Runtime.Memory.Tests.Infrastructure;

/// <summary>
/// A minimal PNG reader for the rendering tests: 8-bit RGB or RGBA, not interlaced (what <c>rsvg-convert</c> writes);
/// anything else is refused. The IDAT stream is inflated with <see cref="ZLibStream"/> and the five filters undone.
/// </summary>
public sealed class Png
{
    private readonly byte[] _rgba;

    private Png(int width, int height, byte[] rgba)
    {
        Width = width;
        Height = height;
        _rgba = rgba;
    }

    public int Width { get; }

    public int Height { get; }

    /// <summary>The pixel at (<paramref name="x"/>, <paramref name="y"/>), top left origin.</summary>
    public (byte R, byte G, byte B, byte A) this[int x, int y]
    {
        get
        {
            int i = ((y * Width) + x) * 4;
            return (_rgba[i], _rgba[i + 1], _rgba[i + 2], _rgba[i + 3]);
        }
    }

    public static Png Read(byte[] file)
    {
        ReadOnlySpan<byte> signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];
        if (!file.AsSpan().StartsWith(signature))
        {
            throw new InvalidDataException("not a PNG file");
        }

        int width = 0, height = 0, channels = 0;
        using var idat = new MemoryStream();
        for (int at = 8; at + 8 <= file.Length;)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(file.AsSpan(at));
            string type = System.Text.Encoding.ASCII.GetString(file, at + 4, 4);
            ReadOnlySpan<byte> data = file.AsSpan(at + 8, length);
            if (type == "IHDR")
            {
                width = BinaryPrimitives.ReadInt32BigEndian(data);
                height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                byte depth = data[8], colour = data[9], interlace = data[12];
                channels = colour switch { 2 => 3, 6 => 4, _ => 0 };
                if (depth != 8 || channels == 0 || interlace != 0)
                {
                    throw new InvalidDataException($"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}");
                }
            }
            else if (type == "IDAT")
            {
                idat.Write(data);
            }
            else if (type == "IEND")
            {
                break;
            }

            at += 12 + length;
        }

        idat.Position = 0;
        using var inflated = new MemoryStream();
        using (var zlib = new ZLibStream(idat, CompressionMode.Decompress))
        {
            zlib.CopyTo(inflated);
        }

        byte[] raw = inflated.ToArray();
        int stride = width * channels;
        var pixels = new byte[height * stride];
        for (int y = 0; y < height; y++)
        {
            byte filter = raw[y * (stride + 1)];
            ReadOnlySpan<byte> line = raw.AsSpan((y * (stride + 1)) + 1, stride);
            Span<byte> output = pixels.AsSpan(y * stride, stride);
            for (int i = 0; i < stride; i++)
            {
                int a = i >= channels ? output[i - channels] : 0;
                int b = y > 0 ? pixels[((y - 1) * stride) + i] : 0;
                int c = i >= channels && y > 0 ? pixels[((y - 1) * stride) + i - channels] : 0;
                int predictor = filter switch
                {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => (a + b) / 2,
                    4 => Paeth(a, b, c),
                    _ => throw new InvalidDataException($"bad PNG filter {filter} on row {y}"),
                };
                output[i] = (byte)(line[i] + predictor);
            }
        }

        var rgba = new byte[width * height * 4];
        for (int p = 0; p < width * height; p++)
        {
            rgba[p * 4] = pixels[p * channels];
            rgba[(p * 4) + 1] = pixels[(p * channels) + 1];
            rgba[(p * 4) + 2] = pixels[(p * channels) + 2];
            rgba[(p * 4) + 3] = channels == 4 ? pixels[(p * channels) + 3] : (byte)255;
        }

        return new Png(width, height, rgba);
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}
