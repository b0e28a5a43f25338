using Runtime.Memory.Platform;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Debugging;

/// <summary>Guard-page mode: blocks end at an inaccessible page, and freed blocks stay inaccessible for a while.</summary>
public sealed unsafe partial class GuardPageTests
{
    [Theory]
    [ClassData(typeof(AllDomains))]
    public void Blocks_end_at_a_page_boundary_rounded_to_16_bytes_and_work_as_usual(MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, guardPages: true);
        MemoryDomain domain = runtime[kind];
        Assert.Equal("debug(guard pages) > " + (kind == MemoryDomainKind.Raw ? "malloc" : "pymalloc"), domain.DescribeChain());
        foreach (nuint size in new nuint[] { 0, 1, 15, 16, 20, 32, 4000, 4096, 10_000 })
        {
            byte* p = (byte*)domain.Malloc(size);
            Assert.True(Blocks.IsAligned(p));
            Assert.Equal(0UL, ((ulong)p + (ulong)((size + 15) & ~(nuint)15)) % (ulong)OsPages.PageSize);
            Blocks.Fill(p, size, 7);
            p = (byte*)domain.Realloc(p, size + 100);
            Assert.True(Blocks.Holds(p, size, 7));
            domain.Free(p);

            byte* z = (byte*)domain.Calloc(1, size);
            Assert.True(Blocks.IsZero(z, size));
            domain.Free(z);
        }

        Assert.Equal(0, runtime.Debugger.Violations);
        Assert.Equal(0, domain.LiveBlocks);
    }

    [Fact]
    public void An_overrun_into_the_alignment_slack_is_reported_at_free()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, guardPages: true);
        byte* p = (byte*)runtime.Mem.Malloc(20);
        p[20] = 0x78; // 12 slack bytes separate a 20-byte block from its guard page
        MemoryViolation violation = DebugRuntimes.Catch(() => runtime.Mem.Free(p));
        Assert.Equal(MemoryViolationKind.BadTrailingPad, violation.Kind);
        TextSnapshot.Verify(DebugRuntimes.Scrub(violation.Report));
    }

    [Fact]
    public void Underruns_and_double_frees_are_reported_as_with_guard_bytes()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Malloc, guardPages: true);
        byte* p = (byte*)runtime.Obj.Malloc(32);
        p[-3] = 1;
        Assert.Equal(MemoryViolationKind.BadLeadingPad, DebugRuntimes.Catch(() => runtime.Obj.Free(p)).Kind);

        byte* q = (byte*)runtime.Obj.Malloc(32);
        runtime.Obj.Free(q);
        MemoryViolation twice = DebugRuntimes.Catch(() => runtime.Obj.Free(q)); // still in quarantine: no fault, a report
        Assert.Equal(MemoryViolationKind.AlreadyFreed, twice.Kind);

        byte* whole = (byte*)runtime.Obj.Malloc(48); // a multiple of 16: the data ends exactly at the guard page
        MemoryViolation interior = DebugRuntimes.Catch(() => runtime.Obj.Free(whole + 4));
        Assert.Equal(MemoryViolationKind.InteriorPointer, interior.Kind);
        Assert.Contains("    No pad bytes at tail: the data ends at an inaccessible guard page.\n", interior.Report);
        runtime.Obj.Free(whole);
    }

    [SkippableFact]
    public void The_quarantine_is_bounded_and_keeps_the_newest_freed_blocks_mapped()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "msync's ENOMEM for unmapped pages (Linux) is how this test sees a mapping");

        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Malloc, guardPages: true);
        nint first = (nint)runtime.Raw.Malloc(64);
        runtime.Raw.Free((void*)first);
        Assert.True(IsMapped(first), "a freed block stays mapped (inaccessible) while in quarantine");

        nint last = 0;
        for (int i = 0; i < MemoryDebugger.QuarantineCapacity; i++)
        {
            last = (nint)runtime.Raw.Malloc(64);
            runtime.Raw.Free((void*)last);
        }

        // The oldest one left when 1,024 newer ones were freed. (Whether its pages are gone cannot be checked here:
        // other tests running at the same time may map new memory at the same address at once.)
        Assert.Equal(MemoryDebugger.QuarantineCapacity, runtime.Debugger.QuarantinedBlocks);
        Assert.Equal(1, runtime.Debugger.QuarantineReleased);
        Assert.True(IsMapped(last), "the newest freed block is still in quarantine, its pages kept (inaccessible)");
    }

    /// <summary>Whether the page holding <paramref name="address"/> is mapped (accessible or not).</summary>
    private static bool IsMapped(nint address)
    {
        nint page = address & ~((nint)OsPages.PageSize - 1);
        return msync(page, OsPages.PageSize, 1 /* MS_ASYNC */) == 0;
    }

    [System.Runtime.InteropServices.LibraryImport("libc.so.6", EntryPoint = "msync")]
    private static partial int msync(nint address, nuint length, int flags);

    [Fact]
    public void A_write_one_byte_past_a_block_faults_at_the_write()
    {
        ChildProcess.Result run = ChildProcess.Run("DebugHooks", "overrun", "--RuntimeMemory:Debug:GuardPages=true");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("mem chain: debug(guard pages) > pymalloc", run.Stdout);
        Assert.Contains("writing one byte past the end", run.Stdout);
        Assert.DoesNotContain("wrote past the block", run.Stdout); // it died at the write
    }

    [Fact]
    public void The_same_program_without_guard_pages_gets_past_the_write()
    {
        ChildProcess.Result run = ChildProcess.Run("DebugHooks", "overrun", "--RuntimeMemory:Debug:OnViolation=Log");
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("wrote past the block; freeing it", run.Stdout);
    }

    [Fact]
    public void A_read_of_a_freed_block_faults_while_it_is_in_quarantine()
    {
        ChildProcess.Result guarded = ChildProcess.Run("DebugHooks", "use-after-free", "--RuntimeMemory:Debug:GuardPages=true");
        Assert.NotEqual(0, guarded.ExitCode);
        Assert.Contains("reading its first byte", guarded.Stdout);
        Assert.DoesNotContain("read 0x", guarded.Stdout);

        ChildProcess.Result plain = ChildProcess.Run("DebugHooks", "use-after-free");
        Assert.Equal(0, plain.ExitCode);
        Assert.Contains("read 0xdd from the freed block", plain.Stdout); // DEADBYTE, not the 42 written before
    }
}
