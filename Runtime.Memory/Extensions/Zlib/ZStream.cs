using System.Runtime.InteropServices;

namespace Runtime.Memory.Extensions;

/// <summary>
/// zlib's <c>z_stream</c> (zlib.h), field for field. <c>uLong</c> is C's <c>unsigned long</c> (<see cref="CULong"/>:
/// 8 bytes on Linux and macOS, 4 on Windows), so the struct is 112 bytes on LP64 and 88 on Windows x64, as the
/// <c>stream_size</c> argument of the init functions checks.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct ZStream
{
    /// <summary>Next input byte.</summary>
    public byte* NextIn;

    /// <summary>Bytes available at <see cref="NextIn"/>.</summary>
    public uint AvailIn;

    /// <summary>Input bytes read so far.</summary>
    public CULong TotalIn;

    /// <summary>Where the next output byte goes.</summary>
    public byte* NextOut;

    /// <summary>Free space at <see cref="NextOut"/>.</summary>
    public uint AvailOut;

    /// <summary>Output bytes written so far.</summary>
    public CULong TotalOut;

    /// <summary>Last error message, or null.</summary>
    public sbyte* Msg;

    /// <summary>Internal state (zlib's).</summary>
    public void* State;

    /// <summary><c>voidpf zalloc(voidpf opaque, uInt items, uInt size)</c>.</summary>
    public delegate* unmanaged<void*, uint, uint, void*> ZAlloc;

    /// <summary><c>void zfree(voidpf opaque, voidpf address)</c>.</summary>
    public delegate* unmanaged<void*, void*, void> ZFree;

    /// <summary>Passed to <see cref="ZAlloc"/> and <see cref="ZFree"/>.</summary>
    public void* Opaque;

    /// <summary>Best guess about the data type.</summary>
    public int DataType;

    /// <summary>Adler-32 or CRC-32 of the data.</summary>
    public CULong Adler;

    /// <summary>Reserved.</summary>
    public CULong Reserved;
}

/// <summary>The zlib functions the routing needs, from the system's zlib (<c>libz.so.1</c>).</summary>
public static unsafe partial class Zlib
{
    /// <summary>Z_OK.</summary>
    public const int Ok = 0;

    /// <summary>Z_STREAM_END.</summary>
    public const int StreamEnd = 1;

    /// <summary>Z_MEM_ERROR: an allocation failed.</summary>
    public const int MemError = -4;

    /// <summary>Z_BUF_ERROR: no progress possible.</summary>
    public const int BufError = -5;

    /// <summary>Z_NO_FLUSH.</summary>
    public const int NoFlush = 0;

    /// <summary>Z_FINISH.</summary>
    public const int Finish = 4;

    /// <summary>Z_DEFLATED.</summary>
    public const int Deflated = 8;

    static Zlib() => Platform.NativeLibraries.EnsureResolver();

    /// <summary>
    /// Loads zlib now, so that a missing library is reported at start rather than at the first stream.
    /// </summary>
    /// <exception cref="DllNotFoundException">zlib is not installed; the message names the files tried.</exception>
    public static string EnsureAvailable()
    {
        try
        {
            return Marshal.PtrToStringUTF8((nint)zlibVersion()) ?? "";
        }
        catch (DllNotFoundException ex)
        {
            throw new DllNotFoundException(
                $"zlib is not available: none of {string.Join(", ", Platform.NativeLibraries.CandidatesOf(Platform.NativeLibraries.Zlib))} could be loaded. Install zlib (Debian: zlib1g).", ex);
        }
    }

    /// <summary><c>const char *zlibVersion(void)</c>.</summary>
    [LibraryImport(Platform.NativeLibraries.Zlib)]
    public static partial byte* zlibVersion();

    /// <summary><c>int deflateInit2_(z_streamp, int level, int method, int windowBits, int memLevel, int strategy, const char *version, int stream_size)</c>.</summary>
    [LibraryImport(Platform.NativeLibraries.Zlib, EntryPoint = "deflateInit2_")]
    public static partial int DeflateInit2(ZStream* stream, int level, int method, int windowBits, int memLevel, int strategy, byte* version, int streamSize);

    /// <summary><c>int deflate(z_streamp, int flush)</c>.</summary>
    [LibraryImport(Platform.NativeLibraries.Zlib, EntryPoint = "deflate")]
    public static partial int Deflate(ZStream* stream, int flush);

    /// <summary><c>int deflateEnd(z_streamp)</c>.</summary>
    [LibraryImport(Platform.NativeLibraries.Zlib, EntryPoint = "deflateEnd")]
    public static partial int DeflateEnd(ZStream* stream);

    /// <summary><c>int inflateInit2_(z_streamp, int windowBits, const char *version, int stream_size)</c>.</summary>
    [LibraryImport(Platform.NativeLibraries.Zlib, EntryPoint = "inflateInit2_")]
    public static partial int InflateInit2(ZStream* stream, int windowBits, byte* version, int streamSize);

    /// <summary><c>int inflate(z_streamp, int flush)</c>.</summary>
    [LibraryImport(Platform.NativeLibraries.Zlib, EntryPoint = "inflate")]
    public static partial int Inflate(ZStream* stream, int flush);

    /// <summary><c>int inflateEnd(z_streamp)</c>.</summary>
    [LibraryImport(Platform.NativeLibraries.Zlib, EntryPoint = "inflateEnd")]
    public static partial int InflateEnd(ZStream* stream);
}
