using System.Runtime.InteropServices;

namespace Runtime.Memory.Extensions.Zlib;

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
