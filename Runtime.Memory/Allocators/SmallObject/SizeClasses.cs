using System.Runtime.CompilerServices;

namespace Runtime.Memory.Allocators.SmallObject;

/// <summary>
/// The geometry of the small-object allocator. Glossary (after mimalloc's <c>types.h</c>):
/// <list type="table">
/// <item><term>block</term><description>what malloc returns: one slot of a size class.</description></item>
/// <item><term>size class</term><description>block sizes 16, 32, ... 512: requests are rounded up to a multiple of 16.</description></item>
/// <item><term>pool</term><description>16 KiB, 16 KiB-aligned, holding blocks of one class behind a header (<see cref="Pool"/>).</description></item>
/// <item><term>arena</term><description>1 MiB from the <see cref="ArenaAllocator"/>, carved into 64 pools.</description></item>
/// <item><term>heap</term><description>one thread's pools, per class (<see cref="Heap"/>); only that thread allocates from them.</description></item>
/// </list>
/// Invariants (checked at compile time where C# allows, by <c>Debug.Assert</c> otherwise):
/// <c>Alignment &lt;= SmallRequestThreshold &lt;= 512</c>; the threshold is a multiple of the alignment; the pool size
/// is a power of two and divides the arena size; the pool header is a multiple of the alignment, so every block is
/// 16-byte aligned.
/// </summary>
internal static class SizeClasses
{
    /// <summary>Block alignment and size-class granularity.</summary>
    public const int Alignment = 16;

    /// <summary>log2(<see cref="Alignment"/>).</summary>
    public const int AlignmentShift = 4;

    /// <summary>Largest request served from pools; larger ones go to the large-block allocator.</summary>
    public const int SmallRequestThreshold = 512;

    /// <summary>Number of size classes: 512 / 16 = 32.</summary>
    public const int Count = SmallRequestThreshold / Alignment;

    /// <summary>log2 of the pool size.</summary>
    public const int PoolBits = 14;

    /// <summary>16 KiB: large enough that 1,018 blocks of 16 bytes share one header, small enough to drain.</summary>
    public const int PoolSize = 1 << PoolBits;

    /// <summary>log2 of the arena size.</summary>
    public const int ArenaBits = 20;

    /// <summary>1 MiB, as CPython's 64-bit arenas.</summary>
    public const int ArenaSize = 1 << ArenaBits;

    /// <summary>Bytes of header at the start of every pool; a multiple of <see cref="Alignment"/>.</summary>
    public static readonly int PoolOverhead = (Unsafe.SizeOf<Pool>() + Alignment - 1) & ~(Alignment - 1);

    /// <summary>The class of a request of 1 to 512 bytes: <c>(size - 1) / 16</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int IndexOf(nuint size) => (int)((size - 1) >> AlignmentShift);

    /// <summary>The block size of class <paramref name="index"/>: <c>(index + 1) × 16</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int SizeOf(int index) => (index + 1) << AlignmentShift;

    /// <summary>Blocks of class <paramref name="index"/> that fit in one pool.</summary>
    public static int BlocksPerPool(int index) => (PoolSize - PoolOverhead) / SizeOf(index);
}
