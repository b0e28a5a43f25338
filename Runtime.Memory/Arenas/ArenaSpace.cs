using System.Diagnostics;
using Runtime.Memory.Platform;

namespace Runtime.Memory.Arenas;

/// <summary>
/// One contiguous reservation of address space that a small-object allocator takes its arenas from, so that "is this
/// address one of my blocks?" is one subtraction and one compare (<see cref="SmallObjectAllocator"/>'s free path),
/// and the pool of a block is found by masking its address, with no lookup table.
/// </summary>
/// <remarks>
/// <code>
///   Base (1 MiB aligned)                                                     Base + Size
///   | arena 0 | arena 1 | (decommitted) | arena 3 | ...   ... (reserved, never committed) |
/// </code>
/// <para>The range is reserved once (<see cref="OsPages.Reserve"/>: no memory, no commit charge) when the allocator
/// needs its first arena. An arena is committed when taken and decommitted when given back, so resident memory goes back
/// to the OS exactly as with separately mapped arenas; the range stays reserved until the allocator is disposed.
/// Arena slots are handed out lowest address first. When the range is full (or could not be reserved), the allocator
/// maps arenas elsewhere and finds them through its radix map, as it does for arenas from a user's arena allocator.</para>
/// <para>Callers hold the allocator's arena lock.</para>
/// </remarks>
internal sealed unsafe class ArenaSpace : ArenaAllocator
{
    /// <summary>Arenas one reservation holds: 4 GiB of address space (4,096 arenas of 1 MiB) on 64-bit, 256 MiB on 32-bit.</summary>
    public static readonly int Capacity = nint.Size == 8 ? 4096 : 256;

    private static readonly nuint Size = (nuint)Capacity * Allocators.SmallObject.SizeClasses.ArenaSize;

    private readonly ulong[] _used = new ulong[Capacity / 64];

    private ArenaSpace(byte* start) => Base = start;

    /// <summary>Start of the reservation.</summary>
    public byte* Base { get; }

    /// <summary>Bytes reserved.</summary>
    public static nuint Bytes => Size;

    public override string Name => "os-pages (reserved space)";

    /// <summary>A new reservation, or null when the OS refuses one.</summary>
    public static ArenaSpace? TryReserve()
    {
        void* start = OsPages.Reserve(Size, Allocators.SmallObject.SizeClasses.ArenaSize);
        return start == null ? null : new ArenaSpace((byte*)start);
    }

    /// <summary>Commits the lowest free arena slot; null when the space is full or the OS refuses.</summary>
    public override void* Alloc(nuint size)
    {
        Debug.Assert(size == Allocators.SmallObject.SizeClasses.ArenaSize, "the space holds arenas only");
        for (int word = 0; word < _used.Length; word++)
        {
            ulong free = ~_used[word];
            if (free == 0)
            {
                continue;
            }

            int slot = word * 64 + System.Numerics.BitOperations.TrailingZeroCount(free);
            byte* arena = Base + (nuint)slot * Allocators.SmallObject.SizeClasses.ArenaSize;
            if (!OsPages.Commit(arena, Allocators.SmallObject.SizeClasses.ArenaSize))
            {
                return null;
            }

            _used[word] |= 1UL << (slot & 63);
            return arena;
        }

        return null;
    }

    /// <summary>Decommits an arena and frees its slot.</summary>
    public override void Free(void* ptr, nuint size)
    {
        nuint slot = (nuint)((byte*)ptr - Base) / Allocators.SmallObject.SizeClasses.ArenaSize;
        Debug.Assert(slot < (nuint)Capacity && (_used[slot / 64] & (1UL << (int)(slot & 63))) != 0, "an arena of this space, in use");
        OsPages.Decommit(ptr, Allocators.SmallObject.SizeClasses.ArenaSize);
        _used[slot / 64] &= ~(1UL << (int)(slot & 63));
    }

    /// <summary>Releases the whole reservation (every arena given back first).</summary>
    public void Release() => OsPages.Release(Base, Size);
}
