using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Runtime.Memory.Platform;

namespace Runtime.Memory;

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
///  address bits:  63..48 | 47..34 (top index) | 33..20 (leaf index) | 19..4 (granule in the chunk) | 3..0
///                 must be 0                                                                           data is
///                                                                                                     16-aligned
///  top    16,384 pointers to leaves (calloc: untouched parts cost nothing)
///  leaf   16,384 pointers to chunks (calloc), one leaf per 16 GiB of address space that holds debug blocks
///  chunk  65,536 shadow bytes for one 1 MiB slot of address space (mmap: pages become resident when touched)
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
    private const int GranuleBits = 4;
    private const int ChunkBits = 20;
    private const int LeafBits = 14;
    private const int TopBits = 14;
    private const int AddressBits = TopBits + LeafBits + ChunkBits; // 48
    private const int ChunkBytes = 1 << (ChunkBits - GranuleBits);   // 65,536 shadow bytes per 1 MiB

    private byte*** _top = (byte***)NativeMemory.AllocZeroed((nuint)(1 << TopBits), (nuint)sizeof(byte**));
    private long _chunks;
    private long _leaves;

    /// <summary>The shadow byte of a block of <paramref name="kind"/> in <paramref name="state"/>.</summary>
    public static byte Code(BlockState state, MemoryDomainKind kind) => (byte)(((int)state << 2) | ((int)kind + 1));

    /// <summary>The state a non-zero shadow byte records.</summary>
    public static BlockState StateOf(byte code) => (BlockState)(code >> 2);

    /// <summary>The domain a non-zero shadow byte records.</summary>
    public static MemoryDomainKind KindOf(byte code) => (MemoryDomainKind)((code & 3) - 1);

    /// <summary>Chunks of shadow mapped (each covers 1 MiB of address space).</summary>
    public long Chunks => Interlocked.Read(ref _chunks);

    /// <summary>Native bytes of address space the map uses (resident memory is less: only touched pages).</summary>
    public long BytesUsed => (1L << TopBits) * sizeof(nint) + Interlocked.Read(ref _leaves) * (1L << LeafBits) * sizeof(nint) + Chunks * ChunkBytes;

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
        for (int t = 0; t < 1 << TopBits; t++)
        {
            byte** leaf = _top[t];
            for (int l = 0; leaf != null && l < 1 << LeafBits; l++)
            {
                byte* chunk = leaf[l];
                if (chunk == null)
                {
                    continue;
                }

                var bytes = new ReadOnlySpan<byte>(chunk, ChunkBytes);
                foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
                {
                    live += bytes.Count(Code(BlockState.Live, kind)) + bytes.Count(Code(BlockState.Busy, kind));
                }
            }
        }

        return live;
    }

    /// <summary>Unmaps every chunk. No hook may use the map afterwards.</summary>
    public void Dispose()
    {
        byte*** top = _top;
        if (top == null)
        {
            return;
        }

        _top = null;
        for (int t = 0; t < 1 << TopBits; t++)
        {
            byte** leaf = top[t];
            if (leaf == null)
            {
                continue;
            }

            for (int l = 0; l < 1 << LeafBits; l++)
            {
                OsPages.Unmap(leaf[l], ChunkBytes);
            }

            NativeMemory.Free(leaf);
        }

        NativeMemory.Free(top);
    }

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
    private byte* ShadowOf(nuint address, bool create)
    {
        ulong a = address;
        if ((a >> AddressBits) != 0)
        {
            return null;
        }

        byte** leaf = _top[a >> (LeafBits + ChunkBits)];
        byte* chunk = leaf == null ? null : leaf[(a >> ChunkBits) & ((1 << LeafBits) - 1)];
        if (chunk == null)
        {
            if (!create)
            {
                return null;
            }

            chunk = CreateChunk(a);
            if (chunk == null)
            {
                return null;
            }
        }

        return chunk + ((a & ((1UL << ChunkBits) - 1)) >> GranuleBits);
    }

    /// <summary>Creates the leaf and chunk of <paramref name="a"/> (cold: once per 1 MiB of address space); null when out of memory.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private byte* CreateChunk(ulong a)
    {
        // Leaves and chunks are published with a compare-exchange and start zeroed, so a plain load that sees the
        // pointer sees everything behind it.
        nint* leafSlot = (nint*)(_top + (a >> (LeafBits + ChunkBits)));
        byte** leaf = (byte**)*leafSlot;
        if (leaf == null)
        {
            byte** fresh;
            try
            {
                fresh = (byte**)NativeMemory.AllocZeroed((nuint)(1 << LeafBits), (nuint)sizeof(byte*));
            }
            catch (OutOfMemoryException)
            {
                return null;
            }

            leaf = (byte**)Interlocked.CompareExchange(ref *leafSlot, (nint)fresh, 0);
            if (leaf == null)
            {
                leaf = fresh;
                Interlocked.Increment(ref _leaves);
            }
            else
            {
                NativeMemory.Free(fresh);
            }
        }

        nint* chunkSlot = (nint*)(leaf + ((a >> ChunkBits) & ((1 << LeafBits) - 1)));
        byte* chunk = (byte*)*chunkSlot;
        if (chunk != null)
        {
            return chunk;
        }

        byte* mapped = (byte*)OsPages.Map(ChunkBytes);
        if (mapped == null)
        {
            return null;
        }

        chunk = (byte*)Interlocked.CompareExchange(ref *chunkSlot, (nint)mapped, 0);
        if (chunk != null)
        {
            OsPages.Unmap(mapped, ChunkBytes);
            return chunk;
        }

        Interlocked.Increment(ref _chunks);
        return mapped;
    }
}
