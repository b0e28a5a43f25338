using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Runtime.Memory.Allocators;

/// <summary>
/// The 16-byte header that the C-library backends (<see cref="SystemAllocator"/>, <see cref="MimallocAllocator"/>)
/// put in front of every block, so that a domain can account exactly the bytes requested. The one place that reads
/// or writes it.
/// </summary>
/// <remarks>
/// <code>
/// Block layout. S = sizeof(nuint).
///
///   base (from the C allocator)   data = base + Size                     data + n
///   |                             |                                      |
///   [ n (S bytes) | magic (S bytes) | n bytes of caller data .............. ]
///
///   n      the size last requested (native-endian), read by RequestedSize
///   magic  the backend's own word, checked by Debug.Assert in BaseOf: a cheap trip-wire for a foreign pointer or a
///          block handed to the wrong backend
/// </code>
/// <para>Invariant: <c>base</c> is 16-byte aligned (each backend asks its C allocator for that), so <c>data</c>, 16
/// bytes further, is too.</para>
/// </remarks>
internal static unsafe class SizeHeader
{
    /// <summary>Bytes in front of every block: the size word and the magic word, rounded to the alignment.</summary>
    public const int Size = 16;

    /// <summary>Largest request a header backend accepts: the domain limit less the header.</summary>
    public static readonly nuint MaxRequest = MemoryDomain.MaxRequestSize - Size;

    /// <summary>Writes the header of a fresh C block and returns its data pointer; null stays null.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void* Write(void* block, nuint size, nuint magic)
    {
        if (block == null)
        {
            return null;
        }

        Debug.Assert(((nuint)block & (MemoryDomain.Alignment - 1)) == 0, "C blocks under a size header must be 16-byte aligned");
        *(nuint*)block = size;
        *(nuint*)((byte*)block + sizeof(nuint)) = magic;
        return (byte*)block + Size;
    }

    /// <summary>The C block under a data pointer that <see cref="Write"/> returned with the same <paramref name="magic"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void* BaseOf(void* data, nuint magic)
    {
        byte* block = (byte*)data - Size;
        Debug.Assert(*(nuint*)(block + sizeof(nuint)) == magic, "the pointer was not returned by this backend, or its header was overwritten");
        return block;
    }

    /// <summary>The size last requested for the block at <paramref name="data"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static nuint RequestedSize(void* data) => *(nuint*)((byte*)data - Size);
}
