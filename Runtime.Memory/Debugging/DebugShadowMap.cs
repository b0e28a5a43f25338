using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Runtime.Memory.Diagnostics;

namespace Runtime.Memory.Debugging;

/// <summary>The state of a debug block, as its shadow byte records it.</summary>
internal enum BlockState : byte
{
    /// <summary>Allocated and not freed.</summary>
    Live = 1,

    /// <summary>Being reallocated by one thread; any other free or realloc of it is a race in the caller.</summary>
    Busy = 2,

    /// <summary>Freed, and its address not reused by a new debug block since.</summary>
    Freed = 3,
}

/// <summary>
/// One byte of shadow per 16 bytes of address space (AddressSanitizer's idea, at a coarser grain) that says which
/// addresses are the start of a debug block, of which domain, and whether it is live, being reallocated or freed.
/// It answers "is this pointer a block?" in O(1) without touching the memory asked about and without a lock, so the
/// debug hooks can reject interior, foreign and freed pointers before reading a byte of them.
/// </summary>
/// <remarks>
/// <code>
///  the radix (address to slot) is <see cref="ShadowRadix{TSlot}"/>, with one byte per 16-byte granule
///
///  shadow byte = state &lt;&lt; 2 | (domain + 1)   for the granule where a block's data starts
///              = 0                           everywhere else (block interiors, guard bytes, other memory)
/// </code>
/// <para>Invariants: a granule is non-zero only at the data start of a block the hooks allocated, and stays so after
/// the block is freed (state Freed) until a new debug block covers that granule; marking a new block clears the
/// shadow of its whole extent first, so no stale mark survives inside a live block. Leaves and chunks are created
/// on first use with a compare-exchange and live as long as the map. State changes of a live block are
/// compare-exchanges, so of two threads freeing one block exactly one succeeds.</para>
/// <para>Memory: 1/16 of the address span that holds debug blocks, resident only where touched (for example 64 KiB
/// per 1 MiB arena of the small-object allocator). Cost per lookup: three dependent loads, the last next to the
/// shadow of the block's neighbours, so it stays in cache while they are in use.</para>
/// </remarks>
internal sealed unsafe class DebugShadowMap : IDisposable
{
    private const int GranuleBits = ShadowRadix<byte>.GranuleBits;
    private const int ChunkBits = ShadowRadix<byte>.ChunkBits;
    private const int ChunkBytes = ShadowRadix<byte>.ChunkSlots; // one byte per granule of 1 MiB

    private readonly ShadowRadix<byte> _radix = new();

    /// <summary>The shadow byte of a block of <paramref name="kind"/> in <paramref name="state"/>.</summary>
    public static byte Code(BlockState state, MemoryDomainKind kind) => (byte)(((int)state << 2) | ((int)kind + 1));

    /// <summary>The state a non-zero shadow byte records.</summary>
    public static BlockState StateOf(byte code) => (BlockState)(code >> 2);

    /// <summary>The domain a non-zero shadow byte records.</summary>
    public static MemoryDomainKind KindOf(byte code) => (MemoryDomainKind)((code & 3) - 1);

    /// <summary>Chunks of shadow mapped (each covers 1 MiB of address space).</summary>
    public long Chunks => _radix.Chunks;

    /// <summary>Native bytes of address space the map uses (resident memory is less: only touched pages).</summary>
    public long BytesUsed => _radix.BytesUsed;

    /// <summary>
    /// Marks <paramref name="data"/> as the start of a live block whose memory spans [<paramref name="extentStart"/>,
    /// <paramref name="extentEnd"/>), clearing stale marks in that span first. False when the address cannot be
    /// shadowed (above 2^48, or out of memory for a chunk): the caller must then fail the allocation.
    /// </summary>
    public bool MarkLive(nuint data, nuint extentStart, nuint extentEnd, byte code)
    {
        byte* shadow = ShadowOf(data, create: true);
        if (shadow == null)
        {
            return false;
        }

        Clear(extentStart, extentEnd);
        Volatile.Write(ref *shadow, code);
        return true;
    }

    /// <summary>The shadow byte of <paramref name="address"/> (16-byte aligned); 0 when none was ever written.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public byte Read(nuint address)
    {
        byte* shadow = ShadowOf(address, create: false);
        return shadow == null ? (byte)0 : Volatile.Read(ref *shadow);
    }

    /// <summary>Changes the shadow byte of <paramref name="address"/> from <paramref name="expected"/> to <paramref name="value"/>, atomically.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryChange(nuint address, byte expected, byte value)
    {
        byte* shadow = ShadowOf(address, create: false);
        return shadow != null && Interlocked.CompareExchange(ref *shadow, value, expected) == expected;
    }

    /// <summary>
    /// The nearest marked granule strictly below <paramref name="address"/>, at most <paramref name="maxDistance"/>
    /// bytes below (for reports of interior pointers; a cold path).
    /// </summary>
    public bool TryFindMarkBelow(nuint address, nuint maxDistance, out nuint start, out byte code)
    {
        nuint low = address > maxDistance ? address - maxDistance : 0;
        nuint granule = (address - 1) & ~(nuint)((1 << GranuleBits) - 1);
        while (address != 0 && granule >= low)
        {
            nuint chunkBase = granule & ~(nuint)((1 << ChunkBits) - 1);
            byte* chunk = ShadowOf(chunkBase, create: false);
            if (chunk != null)
            {
                int last = (int)((granule - chunkBase) >> GranuleBits);
                int first = chunkBase >= low ? 0 : (int)((low - chunkBase) >> GranuleBits);
                int found = new ReadOnlySpan<byte>(chunk + first, last - first + 1).LastIndexOfAnyExcept((byte)0);
                if (found >= 0)
                {
                    start = chunkBase + ((nuint)(first + found) << GranuleBits);
                    code = chunk[first + found];
                    return true;
                }
            }

            if (chunkBase == 0)
            {
                break;
            }

            granule = chunkBase - (1 << GranuleBits);
        }

        start = 0;
        code = 0;
        return false;
    }

    /// <summary>Blocks marked live or busy (a scan of every chunk: for statistics, not for the hot path).</summary>
    public long CountLive()
    {
        long live = 0;
        _radix.ForEachChunk((_, chunk) =>
        {
            var bytes = new ReadOnlySpan<byte>((byte*)chunk, ChunkBytes);
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                live += bytes.Count(Code(BlockState.Live, kind)) + bytes.Count(Code(BlockState.Busy, kind));
            }
        });
        return live;
    }

    /// <summary>Unmaps every chunk. No hook may use the map afterwards.</summary>
    public void Dispose() => _radix.Dispose();

    /// <summary>Zeroes the shadow of [<paramref name="start"/>, <paramref name="end"/>), skipping chunks never created (already zero).</summary>
    private void Clear(nuint start, nuint end)
    {
        nuint granule = start & ~(nuint)((1 << GranuleBits) - 1);
        while (granule < end)
        {
            nuint chunkBase = granule & ~(nuint)((1 << ChunkBits) - 1);
            nuint chunkEnd = chunkBase + (1 << ChunkBits);
            nuint stop = end < chunkEnd ? end : chunkEnd;
            byte* chunk = ShadowOf(chunkBase, create: false);
            if (chunk != null)
            {
                int first = (int)((granule - chunkBase) >> GranuleBits);
                int last = (int)((stop - 1 - chunkBase) >> GranuleBits);
                new Span<byte>(chunk + first, last - first + 1).Clear();
            }

            if (chunkEnd == 0)
            {
                break; // wrapped around the top of the address space
            }

            granule = chunkEnd;
        }
    }

    /// <summary>The shadow byte of <paramref name="address"/>, creating its leaf and chunk when asked; null when there is none.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte* ShadowOf(nuint address, bool create) => _radix.SlotOf(address, create);
}
