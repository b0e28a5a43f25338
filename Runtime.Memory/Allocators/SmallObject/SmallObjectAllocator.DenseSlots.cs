using System.Runtime.CompilerServices;

namespace Runtime.Memory.Allocators.SmallObject;

/// <summary>
/// Dense slots: a numbering of pool blocks for side tables keyed like addresses (the tracer's shadow), so that the
/// entries of one pool's blocks sit next to each other whatever the block size.
/// </summary>
/// <remarks>
/// <para>Block <c>i</c> of the pool at <c>P</c> (its <c>i</c>-th block from the first, of any class) has the slot</para>
/// <code>
///  slot = 2^47 | P + PoolOverhead + 16·i          (P below 2^47; i &lt; (PoolSize − PoolOverhead) / 16)
/// </code>
/// <para>so a table with one entry per 16-byte granule of slot space (<see cref="Diagnostics.ShadowRadix{TSlot}"/>)
/// spends one entry per block, packed from the pool's start: 8 bytes per block instead of 8 per 16 bytes of block. A
/// 256-byte class then touches 1 cache line of the table per 8 blocks rather than one per block, which is what keeps
/// a large, randomly freed heap's side table in the caches.</para>
/// <para><b>Invariants.</b> Slots are distinct for distinct blocks; they lie in [P + PoolOverhead, P + PoolSize) with
/// bit 47 set, so they never equal a user-space address below 2^47 (which the table keys by itself); a slot maps back
/// to its block given the block's class (<see cref="BlockOfDenseSlot"/>), with no memory read. A pool that changes
/// class renumbers its blocks: a table must drop a block's entry when the block is freed.</para>
/// </remarks>
public sealed unsafe partial class SmallObjectAllocator
{
    /// <summary>The bit every dense slot has, and no address a slot is compared with.</summary>
    internal const ulong DenseSlotBit = 1UL << 47;

    /// <summary>⌈2^32 / block size⌉ per class: (offset × it) >> 32 is offset / block size for every offset in a pool.</summary>
    private static ReadOnlySpan<uint> BlockReciprocals =>
    [
        268435456, 134217728, 89478486, 67108864, 53687092, 44739243, 38347923, 33554432,
        29826162, 26843546, 24403224, 22369622, 20648882, 19173962, 17895698, 16777216,
        15790321, 14913081, 14128182, 13421773, 12782641, 12201612, 11671107, 11184811,
        10737419, 10324441, 9942054, 9586981, 9256396, 8947849, 8659209, 8388608,
    ];

    /// <summary>
    /// The dense slot of <paramref name="block"/>, which this allocator has just handed out from a pool of class
    /// <paramref name="classIndex"/> (a request of 1 to 512 bytes); 0 when its pool lies above 2^47.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static nuint DenseSlotOfPoolBlock(void* block, int classIndex)
    {
        nuint pool = (nuint)Pool.Of(block);
        nuint slot = pool + (nuint)SizeClasses.PoolOverhead + ((nuint)IndexInPool(block, pool, classIndex) << SizeClasses.AlignmentShift);
        return (ulong)pool < DenseSlotBit ? (nuint)((ulong)slot | DenseSlotBit) : 0;
    }

    /// <summary>The dense slot of the first block of the pool at <paramref name="pool"/> (its block <c>i</c> has this
    /// slot plus 16·<c>i</c>); 0 when the pool lies above 2^47.</summary>
    internal static nuint FirstDenseSlot(nuint pool) =>
        (ulong)pool < DenseSlotBit ? (nuint)(((ulong)pool + (ulong)SizeClasses.PoolOverhead) | DenseSlotBit) : 0;

    /// <summary>The position of <paramref name="block"/>, a block of class <paramref name="classIndex"/> that this
    /// allocator has handed out from the pool at <paramref name="pool"/>, among that pool's blocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static uint IndexInPool(void* block, nuint pool, int classIndex)
    {
        uint offset = (uint)((nuint)block - pool - (nuint)SizeClasses.PoolOverhead);
        return (uint)(((ulong)offset * BlockReciprocals[classIndex & (SizeClasses.Count - 1)]) >> 32);
    }

    /// <summary>
    /// The position of <paramref name="ptr"/>, which <see cref="InPool"/> has placed in the pool at <paramref name="pool"/>
    /// (below 2^47), a pool of class <paramref name="classIndex"/> (<see cref="PoolClassIfInPool"/>), among that pool's blocks:
    /// false for an address in the pool's header. A pointer into a block gives that block's position: on the domain's
    /// fast path, where this serves a free, such a free is undefined anyway (the debug hooks, which report it, sit
    /// between the tracer and the allocator and so take the checked path).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool TryIndexInOwnPool(void* ptr, nuint pool, int classIndex, out uint index)
    {
        classIndex &= SizeClasses.Count - 1;
        uint offset = (uint)((nuint)ptr - pool - (nuint)SizeClasses.PoolOverhead); // a header address wraps to a huge offset
        index = (uint)(((ulong)offset * BlockReciprocals[classIndex]) >> 32);
        return offset < (uint)(SizeClasses.PoolSize - SizeClasses.PoolOverhead);
    }

    /// <summary>
    /// The dense slot of <paramref name="ptr"/> when it is the start of a block in one of this allocator's pools (and
    /// the class of that block), else 0: a large block, a pointer into a block, or memory this allocator does not own.
    /// Reads only this allocator's arena map and, for a pool address, the pool's header.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal nuint DenseSlotOf(void* ptr, out int classIndex)
    {
        if (_map.Contains(ptr))
        {
            return DenseSlotOfPooled(ptr, out classIndex);
        }

        classIndex = -1;
        return 0;
    }

    /// <summary><see cref="DenseSlotOf"/> for a pointer <see cref="InPool"/> has placed in a pool.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static nuint DenseSlotOfPooled(void* ptr, out int classIndex)
    {
        Pool* pool = Pool.Of(ptr);
        classIndex = pool->ClassIndex & (SizeClasses.Count - 1);
        uint offset = (uint)((nuint)ptr - (nuint)pool - (nuint)SizeClasses.PoolOverhead); // a header address wraps to a huge offset
        uint index = (uint)(((ulong)offset * BlockReciprocals[classIndex]) >> 32);
        if (offset >= (uint)(SizeClasses.PoolSize - SizeClasses.PoolOverhead) || index * (uint)SizeClasses.SizeOf(classIndex) != offset
            || (ulong)pool >= DenseSlotBit)
        {
            classIndex = -1;
            return 0;
        }

        return (nuint)(((ulong)pool + (ulong)SizeClasses.PoolOverhead + ((ulong)index << SizeClasses.AlignmentShift)) | DenseSlotBit);
    }

    /// <summary>The block whose dense slot is <paramref name="slot"/>, given its class.</summary>
    internal static nuint BlockOfDenseSlot(nuint slot, int classIndex)
    {
        ulong s = (ulong)slot & ~DenseSlotBit;
        ulong pool = s & ~(ulong)(SizeClasses.PoolSize - 1);
        ulong index = ((s & (SizeClasses.PoolSize - 1)) - (ulong)SizeClasses.PoolOverhead) >> SizeClasses.AlignmentShift;
        return (nuint)(pool + (ulong)SizeClasses.PoolOverhead + (index * (ulong)SizeClasses.SizeOf(classIndex)));
    }
}
