using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Runtime.Memory.Platform;

namespace Runtime.Memory.Diagnostics;

/// <summary>
/// Shadow memory: one <typeparamref name="TSlot"/> per 16-byte granule of the address space, found by address
/// arithmetic through a two-level radix (AddressSanitizer's idea). The debug hooks keep one byte per granule in it, the
/// tracer eight; a slot is read or written without a lock, and only the pages of it that are touched become resident.
/// </summary>
/// <remarks>
/// <code>
///  address bits:  63..48 | 47..34 (top index) | 33..20 (leaf index) | 19..4 (granule in the chunk) | 3..0
///                 must be 0                                                                           16-aligned
///  top    16,384 pointers to leaves (zeroed: untouched parts cost nothing)
///  leaf   16,384 pointers to chunks (zeroed), one leaf per 16 GiB of address space that is shadowed
///  chunk  65,536 slots for one 1 MiB slot of address space (mmap: pages become resident when touched)
/// </code>
/// <para>Invariants: leaves and chunks are created on first use and published with a compare-exchange; they start
/// zeroed and live until <see cref="Dispose"/>, so a plain load that sees a pointer sees zeroed or written slots
/// behind it. Cost per lookup: three dependent loads, the last next to the slots of the block's neighbours.</para>
/// </remarks>
internal sealed unsafe class ShadowRadix<TSlot> : IDisposable
    where TSlot : unmanaged
{
    public const int GranuleBits = 4;
    public const int ChunkBits = 20;
    private const int LeafBits = 14;
    private const int TopBits = 14;
    private const int AddressBits = TopBits + LeafBits + ChunkBits; // 48

    /// <summary>Slots per chunk: one per granule of 1 MiB.</summary>
    public const int ChunkSlots = 1 << (ChunkBits - GranuleBits);

    private static readonly nuint ChunkBytes = (nuint)(ChunkSlots * sizeof(TSlot));

    private TSlot*** _top = (TSlot***)NativeMemory.AllocZeroed((nuint)(1 << TopBits), (nuint)sizeof(TSlot**));
    private long _chunks;
    private long _leaves;

    /// <summary>Chunks mapped (each covers 1 MiB of address space).</summary>
    public long Chunks => Interlocked.Read(ref _chunks);

    /// <summary>Native bytes of address space the shadow uses (resident memory is less: only touched pages).</summary>
    public long BytesUsed =>
        ((1L << TopBits) * sizeof(nint)) + (Interlocked.Read(ref _leaves) * (1L << LeafBits) * sizeof(nint)) + (Chunks * (long)ChunkBytes);

    /// <summary>The slot of <paramref name="address"/>, creating its leaf and chunk when asked; null when there is none
    /// (never created, above 2^48, or out of memory).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public TSlot* SlotOf(nuint address, bool create)
    {
        ulong a = address;
        TSlot*** top = _top;
        if ((a >> AddressBits) != 0 || top == null) // above 2^48, or disposed
        {
            return null;
        }

        TSlot** leaf = top[a >> (LeafBits + ChunkBits)];
        TSlot* chunk = leaf == null ? null : leaf[(a >> ChunkBits) & ((1 << LeafBits) - 1)];
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

    /// <summary>Calls <paramref name="visit"/> with the base address and slots of every chunk (a scan: for reports and
    /// snapshots, not for the hot path).</summary>
    public void ForEachChunk(Action<nuint, nint> visit)
    {
        TSlot*** top = _top;
        for (int t = 0; top != null && t < 1 << TopBits; t++)
        {
            TSlot** leaf = top[t];
            for (int l = 0; leaf != null && l < 1 << LeafBits; l++)
            {
                if (leaf[l] != null)
                {
                    visit((nuint)(((ulong)t << (LeafBits + ChunkBits)) | ((ulong)l << ChunkBits)), (nint)leaf[l]);
                }
            }
        }
    }

    /// <summary>Gives every chunk's pages back to the OS; the chunks stay mapped, and their slots must not be relied on
    /// afterwards (zero on Linux; see <see cref="OsPages.Discard"/>).</summary>
    public void Discard() => ForEachChunk((_, chunk) => OsPages.Discard((void*)chunk, ChunkBytes));

    /// <summary>Creates the leaf and chunk of <paramref name="a"/> (cold: once per 1 MiB of address space); null when out of memory.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private TSlot* CreateChunk(ulong a)
    {
        TSlot*** top = _top;
        if (top == null)
        {
            return null;
        }

        nint* leafSlot = (nint*)(top + (a >> (LeafBits + ChunkBits)));
        TSlot** leaf = (TSlot**)*leafSlot;
        if (leaf == null)
        {
            TSlot** fresh;
            try
            {
                fresh = (TSlot**)NativeMemory.AllocZeroed((nuint)(1 << LeafBits), (nuint)sizeof(TSlot*));
            }
            catch (OutOfMemoryException)
            {
                return null;
            }

            leaf = (TSlot**)Interlocked.CompareExchange(ref *leafSlot, (nint)fresh, 0);
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
        TSlot* chunk = (TSlot*)*chunkSlot;
        if (chunk != null)
        {
            return chunk;
        }

        var mapped = (TSlot*)OsPages.Map(ChunkBytes);
        if (mapped == null)
        {
            return null;
        }

        chunk = (TSlot*)Interlocked.CompareExchange(ref *chunkSlot, (nint)mapped, 0);
        if (chunk != null)
        {
            OsPages.Unmap(mapped, ChunkBytes);
            return chunk;
        }

        Interlocked.Increment(ref _chunks);
        return mapped;
    }

    /// <summary>Unmaps every chunk. Nobody may use the shadow afterwards.</summary>
    public void Dispose()
    {
        TSlot*** top = _top;
        if (top == null)
        {
            return;
        }

        _top = null;
        for (int t = 0; t < 1 << TopBits; t++)
        {
            TSlot** leaf = top[t];
            if (leaf == null)
            {
                continue;
            }

            for (int l = 0; l < 1 << LeafBits; l++)
            {
                if (leaf[l] != null)
                {
                    OsPages.Unmap(leaf[l], ChunkBytes);
                }
            }

            NativeMemory.Free(leaf);
        }

        NativeMemory.Free(top);
    }
}
