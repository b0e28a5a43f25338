using System.Globalization;

namespace Runtime.Memory.Tests.Allocators.SmallObject;

/// <summary>
/// The small-object allocator's arenas come from one reserved range of address space, so a free knows a block is its
/// own by one compare; arenas from elsewhere (a user's arena allocator) still work through the radix map, and an arena
/// given back leaves the range without its memory.
/// </summary>
public sealed unsafe class ArenaSpaceTests
{
    private sealed class OtherArenas : ArenaAllocator
    {
        public int Allocated;
        public int Freed;

        public override void* Alloc(nuint size)
        {
            Allocated++;
            return OsArenaAllocator.Instance.Alloc(size);
        }

        public override void Free(void* ptr, nuint size)
        {
            Freed++;
            OsArenaAllocator.Instance.Free(ptr, size);
        }
    }

    private static bool InSpace(SmallObjectAllocator allocator, void* p) =>
        (nuint)p - allocator.ReservedSpace.Start < allocator.ReservedSpace.Size;

    [Fact]
    public void Arenas_from_the_os_lie_in_the_reserved_space_and_others_outside_it_and_all_free_correctly()
    {
        using var allocator = new SmallObjectAllocator();
        var blocks = new List<nint>();
        for (int i = 0; i < 3 * 2048; i++) // 512-byte blocks: three arenas' worth
        {
            blocks.Add((nint)allocator.Malloc(512));
        }

        Assert.NotEqual((nuint)0, allocator.ReservedSpace.Size);
        Assert.All(blocks, b => Assert.True(InSpace(allocator, (void*)b)));

        var other = new OtherArenas();
        allocator.ArenaAllocator = other;
        var outside = new List<nint>();
        for (int i = 0; i < 3 * 2048; i++)
        {
            outside.Add((nint)allocator.Malloc(512));
        }

        Assert.True(other.Allocated >= 2);
        int elsewhere = outside.Count(b => !InSpace(allocator, (void*)b)); // the rest filled pools of arenas already in the space
        Assert.True(elsewhere >= (other.Allocated - 1) * 2000, $"{elsewhere} blocks outside the space from {other.Allocated} arenas of the other allocator");
        Assert.All(outside, b => Assert.Equal((nuint)512, allocator.BlockSize((void*)b))); // those outside: found through the radix map

        var all = blocks.Concat(outside).ToArray();
        new Random(3).Shuffle(all);
        foreach (nint b in all)
        {
            allocator.Free((void*)b);
        }

        allocator.Collect();
        Assert.Empty(allocator.CheckInvariants());
        Assert.Equal(0, allocator.GetStatistics().BlocksInUse);
        Assert.True(allocator.GetStatistics().ArenasCurrent <= 1, "one wholly free arena is kept as a spare");
        Assert.True(allocator.TryRelease());
        Assert.Equal(other.Allocated, other.Freed); // every arena outside the space went back to its allocator
        Assert.Equal((nuint)0, allocator.ReservedSpace.Size); // and the space was released
    }

    [SkippableFact]
    public void An_arena_given_back_leaves_no_resident_memory_in_the_space()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/smaps");
        using var allocator = new SmallObjectAllocator();
        var blocks = new nint[16 * 2048]; // 16 MiB of 512-byte blocks
        for (int i = 0; i < blocks.Length; i++)
        {
            blocks[i] = (nint)allocator.Malloc(512);
            *(long*)blocks[i] = i; // touch every page
        }

        long during = ResidentInRange(allocator.ReservedSpace);
        Assert.True(during >= 15L << 20, $"{during:N0} bytes resident in the space while 16 MiB of blocks live");

        foreach (nint b in blocks)
        {
            allocator.Free((void*)b);
        }

        allocator.Collect();
        long after = ResidentInRange(allocator.ReservedSpace);
        Assert.True(after <= 1L << 20, $"{after:N0} bytes still resident in the space after every block was freed (at most the one spare arena may stay)");
    }

    /// <summary>Resident bytes of the mappings inside [start, start + size), from /proc/self/smaps.</summary>
    private static long ResidentInRange((nuint Start, nuint Size) range)
    {
        long resident = 0;
        bool inside = false;
        foreach (string line in File.ReadLines("/proc/self/smaps"))
        {
            int dash = line.IndexOf('-');
            if (dash > 0 && line.IndexOf(' ') > dash && ulong.TryParse(line.AsSpan(0, dash), NumberStyles.HexNumber, null, out ulong start))
            {
                inside = start >= range.Start && start < range.Start + range.Size;
            }
            else if (inside && line.StartsWith("Rss:", StringComparison.Ordinal))
            {
                resident += long.Parse(line.AsSpan(4).Trim().ToString().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
            }
        }

        return resident;
    }
}
