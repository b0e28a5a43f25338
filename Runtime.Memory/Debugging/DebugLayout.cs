using System.Buffers.Binary;
using System.Runtime.CompilerServices;

namespace Runtime.Memory.Debugging;

/// <summary>
/// The byte layout of a block under the debug hooks, and the small unsafe primitives that write and check it.
/// Everything else in the debug hooks reads and writes blocks through these.
/// </summary>
/// <remarks>
/// <code>
/// Guard-byte mode (CPython's layout with PYMEM_DEBUG_SERIALNO; every field is 8 bytes on every platform, so
/// data stays 16-byte aligned on 32-bit too, which CPython's does not: bpo-30150):
///
///   base                        data = base + 16                     tail = data + n
///   |                           |                                    |
///   [ n, big-endian (8) | id (1) | 0xFD x 7 ][ n bytes of data ...... ][ 0xFD x 8 | serial (8) ]
///     p-16 .. p-9         p-8      p-7..p-1    p .. p+n-1                tail+0..7   tail+8..15
///
///   n       the size requested; big-endian so that it reads naturally in a memory dump (as CPython writes it)
///   id      the API id of the domain that allocated the block: 'r', 'm' or 'o'
///   0xFD    FORBIDDENBYTE: untouchable pad before and after the data
///   serial  the number of the debug malloc/realloc call that made the block ("made by call #N"): a check byte,
///           then the number in 7 bytes, big-endian. The check byte (0xFD xor the 7 others) makes any damage to
///           the field detectable, so an overrun that jumps the pad is caught too.
///   data    0xCD (CLEANBYTE) after malloc, zeros after calloc; the whole block becomes 0xDD (DEADBYTE) when freed
///
/// Guard-page mode (one mapping per block; P = the OS page size):
///
///   mapping base                                                 guard = data + round16(n)       guard + P
///   |                                                            |                               |
///   [ unused | n (8) | serial (8) | n (8) | id | 0xFD x 7 ][ data .. | 0xFD x (round16(n) - n) ][ no access ]
///              p-32    p-24         p-16    p-8   p-7..p-1
///
///   The data ends at the guard page, rounded up to 16 bytes so that alignment holds; the 0..15 slack bytes are
///   forbidden bytes checked at free. The second copy of n at p-32 tells a damaged size field from a sound one.
/// </code>
/// <para>Nothing here is read before the shadow map (<see cref="DebugShadowMap"/>) has said that the pointer is a
/// live block, and the size field is not trusted until it agrees with the allocator below (or, with guard pages,
/// with its copy): CPython reads the size blindly, and with a damaged size "checking the trailing pad bytes may
/// segfault".</para>
/// </remarks>
internal static unsafe class DebugLayout
{
    /// <summary>CPython's PYMEM_CLEANBYTE: new data.</summary>
    public const byte CleanByte = 0xCD;

    /// <summary>CPython's PYMEM_DEADBYTE: freed blocks.</summary>
    public const byte DeadByte = 0xDD;

    /// <summary>CPython's PYMEM_FORBIDDENBYTE: the pads at each end.</summary>
    public const byte ForbiddenByte = 0xFD;

    /// <summary>Width of every field: the size, the id + leading pad, the trailing pad and the serial number.</summary>
    public const int FieldSize = 8;

    /// <summary>Bytes before the data: the size field and the id + leading pad word.</summary>
    public const int HeaderSize = 2 * FieldSize;

    /// <summary>Leading pad bytes, between the id byte and the data (CPython's S-1).</summary>
    public const int LeadingPadSize = FieldSize - 1;

    /// <summary>Bytes after the data in guard-byte mode: the trailing pad and the serial number.</summary>
    public const int TrailerSize = 2 * FieldSize;

    /// <summary>Extra bytes per block in guard-byte mode (CPython's 4*S with serial numbers).</summary>
    public const int Overhead = HeaderSize + TrailerSize;

    /// <summary>Largest request the guard-byte layout can represent: the domain limit less the overhead.</summary>
    public static readonly nuint MaxSize = MemoryDomain.MaxRequestSize - Overhead;

    private const ulong ForbiddenWord = 0xFDFD_FDFD_FDFD_FDFDUL;

    /// <summary>The id + leading pad word as it sits in memory: the id byte first, then seven forbidden bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong IdWord(byte api) =>
        BitConverter.IsLittleEndian ? (ForbiddenWord & ~0xFFUL) | api : (ForbiddenWord >> 8) | ((ulong)api << 56);

    /// <summary>The size field as it sits in memory: big-endian.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong SizeWord(nuint size) => BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness((ulong)size) : size;

    /// <summary>Writes the size, id and leading pad in front of <paramref name="data"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WriteHeader(byte* data, nuint size, byte api)
    {
        Unsafe.WriteUnaligned(data - HeaderSize, SizeWord(size));
        Unsafe.WriteUnaligned(data - FieldSize, IdWord(api));
    }

    /// <summary>Writes the trailing pad and the serial number after the <paramref name="size"/> data bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void WriteTrailer(byte* data, nuint size, ulong serial)
    {
        Unsafe.WriteUnaligned(data + size, ForbiddenWord);
        Unsafe.WriteUnaligned(data + size + FieldSize, SerialWord(serial));
    }

    /// <summary>The size in the size field (which may be damaged).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nuint ReadSize(byte* data)
    {
        ulong word = Unsafe.ReadUnaligned<ulong>(data - HeaderSize);
        ulong size = BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(word) : word;
        return size > MaxSize ? nuint.MaxValue : (nuint)size;
    }

    /// <summary>Whether the id + leading pad word in front of <paramref name="data"/> is intact.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IdAndPadIntact(byte* data, byte api) => Unsafe.ReadUnaligned<ulong>(data - FieldSize) == IdWord(api);

    /// <summary>Whether the trailing pad is intact and the serial field passes its check byte.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TrailerIntact(byte* data, nuint size) =>
        Unsafe.ReadUnaligned<ulong>(data + size) == ForbiddenWord && TryReadSerial(data + size + FieldSize, out _);

    /// <summary>Whether the trailing pad (the 8 bytes right after the data) is intact.</summary>
    public static bool TrailingPadIntact(byte* data, nuint size) => Unsafe.ReadUnaligned<ulong>(data + size) == ForbiddenWord;

    /// <summary>The serial number in the 8-byte field at <paramref name="field"/>; false when its check byte does not match.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryReadSerial(byte* field, out ulong serial)
    {
        ulong word = Unsafe.ReadUnaligned<ulong>(field);
        ulong value = BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(word) : word;
        serial = value & SerialMask;
        return value == SerialValue(serial);
    }

    /// <summary>Where the serial number of a block is: after the trailing pad, or with guard pages at p-24.</summary>
    public static byte* SerialField(byte* data, nuint size, bool guardPage) => guardPage ? data - GuardHeaderSize + FieldSize : data + size + FieldSize;

    /// <summary>Bytes in front of the data in guard-page mode: the size copy, the serial number, the size, the id and pad.</summary>
    public const int GuardHeaderSize = 4 * FieldSize;

    /// <summary>Writes the guard-page mode's extra header fields: the copy of the size and the serial number.</summary>
    public static void WriteGuardFields(byte* data, nuint size, ulong serial)
    {
        Unsafe.WriteUnaligned(data - GuardHeaderSize, SizeWord(size));
        Unsafe.WriteUnaligned(data - GuardHeaderSize + FieldSize, SerialWord(serial));
    }

    /// <summary>The copy of the size kept at p-32 in guard-page mode.</summary>
    public static nuint ReadGuardSizeCopy(byte* data)
    {
        ulong word = Unsafe.ReadUnaligned<ulong>(data - GuardHeaderSize);
        ulong size = BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(word) : word;
        return size > MaxSize ? nuint.MaxValue : (nuint)size;
    }

    /// <summary>Serial numbers have 56 bits; the top byte of the field is the check byte.</summary>
    private const ulong SerialMask = (1UL << 56) - 1;

    /// <summary>The serial field as a big-endian value: check byte, then the 56-bit number.</summary>
    private static ulong SerialValue(ulong serial)
    {
        ulong folded = serial ^ (serial >> 32);
        folded ^= folded >> 16;
        folded ^= folded >> 8;
        return ((ulong)(byte)(ForbiddenByte ^ (byte)folded) << 56) | (serial & SerialMask);
    }

    private static ulong SerialWord(ulong serial)
    {
        ulong value = SerialValue(serial);
        return BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(value) : value;
    }

    /// <summary>Bytes between the end of the data and the guard page in guard-page mode (0..15).</summary>
    public static nuint GuardSlack(nuint size) => RoundUp16(size) - size;

    /// <summary>Whether the 0..15 slack bytes before the guard page are all forbidden bytes.</summary>
    public static bool SlackIntact(byte* data, nuint size) =>
        !new ReadOnlySpan<byte>(data + size, (int)GuardSlack(size)).ContainsAnyExcept(ForbiddenByte);

    /// <summary>Fills the slack before the guard page with forbidden bytes.</summary>
    public static void WriteSlack(byte* data, nuint size) => new Span<byte>(data + size, (int)GuardSlack(size)).Fill(ForbiddenByte);

    /// <summary><paramref name="size"/> rounded up to the 16-byte alignment.</summary>
    public static nuint RoundUp16(nuint size) => (size + (MemoryDomain.Alignment - 1)) & ~(MemoryDomain.Alignment - 1);

    /// <summary>Fills <paramref name="length"/> bytes with <paramref name="value"/> (any length a block can have).</summary>
    public static void Fill(byte* p, nuint length, byte value)
    {
        while (length > int.MaxValue)
        {
            new Span<byte>(p, int.MaxValue).Fill(value);
            p += int.MaxValue;
            length -= int.MaxValue;
        }

        new Span<byte>(p, (int)length).Fill(value);
    }

    /// <summary>Copies <paramref name="length"/> bytes between blocks that do not overlap.</summary>
    public static void Copy(byte* from, byte* to, nuint length) => Buffer.MemoryCopy(from, to, length, length);
}
