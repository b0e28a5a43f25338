using Runtime.Memory.Platform;

namespace Runtime.Memory.Debugging;

/// <summary>
/// Blocks with their own pages and an inaccessible page right after the data (guard-page mode; the layout is drawn
/// on <see cref="DebugLayout"/>). Where a block's mapping starts and how long it is follow from its data pointer and
/// size alone, so nothing else is stored.
/// </summary>
/// <remarks>
/// Cost: one <c>mmap</c> and one <c>mprotect</c> per allocation, <c>mprotect</c> + <c>madvise</c> per free, <c>munmap</c>
/// when a freed block leaves the quarantine. Each block takes at least two pages of address space (one resident) and
/// two kernel mappings; Linux allows 65,530 mappings per process by default (<c>vm.max_map_count</c>), so about
/// 32,000 live blocks, after which allocations fail (return null) until the limit is raised.
/// </remarks>
internal static unsafe class GuardPageBlocks
{
    /// <summary>Maps a block of <paramref name="size"/> bytes ending at a guard page; returns its data pointer (zeroed), or null.</summary>
    public static byte* Allocate(nuint size)
    {
        nuint span = DebugLayout.RoundUp16(size);
        nuint accessible = AccessibleBytes(span);
        if (accessible < span)
        {
            return null; // overflow
        }

        byte* mapping = (byte*)OsPages.MapGuarded(accessible);
        return mapping == null ? null : mapping + accessible - span;
    }

    /// <summary>Makes a freed block inaccessible and gives its memory back, keeping the range reserved (quarantine).</summary>
    public static void Retire(nuint data, nuint size)
    {
        nuint mapping = MappingOf(data);
        OsPages.Retire((void*)mapping, data + DebugLayout.RoundUp16(size) - mapping);
    }

    /// <summary>Unmaps the block at <paramref name="data"/> of <paramref name="size"/> bytes.</summary>
    public static void Unmap(nuint data, nuint size)
    {
        nuint mapping = MappingOf(data);
        OsPages.UnmapGuarded((void*)mapping, data + DebugLayout.RoundUp16(size) - mapping);
    }

    /// <summary>Accessible bytes for <paramref name="span"/> data bytes and the header: whole pages.</summary>
    private static nuint AccessibleBytes(nuint span) =>
        (span + DebugLayout.GuardHeaderSize + OsPages.PageSize - 1) & ~(OsPages.PageSize - 1);

    /// <summary>The start of the mapping: the page that holds the header.</summary>
    private static nuint MappingOf(nuint data) => (data - DebugLayout.GuardHeaderSize) & ~(OsPages.PageSize - 1);
}
