using System.Runtime.InteropServices;

namespace Runtime.Memory.Extensions.Zlib;

/// <summary>The zlib functions the routing needs, from the system's zlib (<c>libz.so.1</c>).</summary>
public static unsafe partial class ZlibNative
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

    static ZlibNative() => Platform.NativeLibraries.EnsureResolver();

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
