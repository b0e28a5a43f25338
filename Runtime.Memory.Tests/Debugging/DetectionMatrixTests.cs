using System.Runtime.InteropServices;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Debugging;

/// <summary>
/// The detection matrix of the debug hooks: each misuse, provoked on purpose (as CPython's <c>test_mem.py</c> does) on
/// all three domains and on every base allocator, must give the right report. One snapshot per misuse holds the
/// reports of the three domains; every base allocator must produce exactly that text (addresses scrubbed).
/// </summary>
public sealed unsafe class DetectionMatrixTests
{
    /// <summary>Provokes the misuse on <paramref name="domain"/> of a fresh runtime and returns what was reported.</summary>
    private delegate MemoryViolation Misuse(RuntimeMemory runtime, MemoryDomain domain);

    /// <summary>Runs <paramref name="misuse"/> on each domain, checks the kind, and returns the three reports.</summary>
    private static string OnEveryDomain(string allocator, MemoryViolationKind expected, Misuse misuse, long liveAfter = 1)
    {
        var text = new System.Text.StringBuilder();
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
            MemoryDomain domain = runtime[kind];
            MemoryViolation violation = misuse(runtime, domain);
            Assert.Equal(expected, violation.Kind);
            Assert.Equal(1, runtime.Debugger.Violations);
            Assert.Same(violation, runtime.Debugger.LastViolation);

            // Nothing is lost: a refused free leaves the block live, in the domain's figures and in the registry.
            Assert.Equal(liveAfter, runtime.GetStatistics().LiveBlocks);
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $"== {kind.ToName()} domain\n").Append(DebugRuntimes.Scrub(violation.Report));
        }

        return text.ToString();
    }

    private static MemoryDomain Next(RuntimeMemory runtime, MemoryDomain domain) =>
        runtime[(MemoryDomainKind)(((int)domain.Kind + 1) % MemoryDomainKindExtensions.Count)];

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void An_overrun_by_one_byte_is_reported_at_tail_plus_0(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.BadTrailingPad, (_, domain) =>
        {
            byte* p = (byte*)domain.Malloc(16);
            p[16] = (byte)'x';
            return DebugRuntimes.Catch(() => domain.Free(p));
        }));

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void An_overrun_at_each_tail_offset_is_reported_at_that_offset_only(string allocator, MemoryDomainKind kind)
    {
        for (int offset = 0; offset < 2 * 8; offset++)
        {
            using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
            MemoryDomain domain = runtime[kind];
            byte* p = (byte*)domain.Malloc(24);
            p[24 + offset] = 0x78;
            MemoryViolation violation = DebugRuntimes.Catch(() => domain.Free(p));

            Assert.Equal(MemoryViolationKind.BadTrailingPad, violation.Kind);
            if (offset < 8)
            {
                // A pad byte: marked where it is.
                Assert.Contains($"        at tail+{offset}: 0x78 *** OUCH\n", violation.Report);
                Assert.Single(violation.Report.Split("*** OUCH").Skip(1));
                Assert.Contains("pad bytes at tail=0x", violation.Report);
                Assert.Contains("are not all FORBIDDENBYTE", violation.Report);
                Assert.Contains("The block was made by call #1 to debug malloc/realloc.", violation.Report);
            }
            else
            {
                // The serial number past the pad: its check byte gives the damage away; the bytes are listed.
                Assert.Contains("bad serial number after the trailing pad", violation.Summary);
                Assert.Contains("The serial number at tail+8 is damaged", violation.Report);
                Assert.Contains($"        at tail+{offset}: 0x78\n", violation.Report);
                Assert.DoesNotContain("*** OUCH", violation.Report);
            }
        }
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void An_overrun_into_the_serial_number_is_reported_with_the_serial_bytes(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.BadTrailingPad, (_, domain) =>
        {
            byte* p = (byte*)domain.Malloc(20);
            new Span<byte>(p, 20).Fill(0x2a);
            p[20 + 8 + 7] = 0x00; // the serial number's last byte: call #1 reads 0x01 there
            return DebugRuntimes.Catch(() => domain.Free(p));
        }));

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void An_underrun_into_the_leading_pad_is_reported_at_p_minus_1(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.BadLeadingPad, (_, domain) =>
        {
            byte* p = (byte*)domain.Malloc(40);
            p[-1] = 0;
            return DebugRuntimes.Catch(() => domain.Free(p));
        }));

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void An_underrun_into_the_size_field_is_reported_without_trusting_it(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.BadSizeField, (_, domain) =>
        {
            byte* p = (byte*)domain.Malloc(16);
            p[-12] = 0x41; // CPython would read a size of about 2^38 here and walk off the block checking the tail
            return DebugRuntimes.Catch(() => domain.Free(p));
        }));

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void A_double_free_is_reported_with_when_the_block_was_made_and_freed(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.AlreadyFreed, (_, domain) =>
        {
            void* p = domain.Malloc(32);
            domain.Free(p);
            return DebugRuntimes.Catch(() => domain.Free(p));
        }, liveAfter: 0));

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void A_free_through_the_wrong_domain_is_reported_as_a_bad_id(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.WrongDomain, (runtime, domain) =>
        {
            void* p = domain.Malloc(16);
            return DebugRuntimes.Catch(() => Next(runtime, domain).Free(p));
        }));

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void A_realloc_through_the_wrong_domain_is_reported_as_a_bad_id(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.WrongDomain, (runtime, domain) =>
        {
            void* p = domain.Malloc(16);
            return DebugRuntimes.Catch(() => Next(runtime, domain).Realloc(p, 100));
        }));

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void A_realloc_of_a_freed_block_is_reported(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.AlreadyFreed, (_, domain) =>
        {
            void* p = domain.Malloc(48);
            domain.Free(p);
            return DebugRuntimes.Catch(() => domain.Realloc(p, 64));
        }, liveAfter: 0));

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void A_free_of_an_interior_pointer_names_the_block_it_lies_in(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.InteriorPointer, (_, domain) =>
        {
            byte* p = (byte*)domain.Malloc(64);
            return DebugRuntimes.Catch(() => domain.Free(p + 8));
        }));

    [Theory]
    [ClassData(typeof(DebugBaseAllocators))]
    public void A_free_of_a_pointer_from_another_allocator_is_reported_without_touching_it(string allocator) =>
        TextSnapshot.Verify(OnEveryDomain(allocator, MemoryViolationKind.UnknownPointer, (_, domain) =>
        {
            byte* foreign = (byte*)NativeMemory.Alloc(16);
            try
            {
                new Span<byte>(foreign, 16).Fill(0x5a);
                MemoryViolation violation = DebugRuntimes.Catch(() => domain.Free(foreign));
                Assert.True(new ReadOnlySpan<byte>(foreign, 16).IndexOfAnyExcept((byte)0x5a) < 0, "the foreign block was written to");
                return violation;
            }
            finally
            {
                NativeMemory.Free(foreign);
            }
        }, liveAfter: 0));

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void A_pointer_into_the_header_of_a_block_is_an_interior_pointer_before_its_start(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        byte* p = (byte*)runtime[kind].Malloc(16);
        MemoryViolation violation = DebugRuntimes.Catch(() => runtime[kind].Free(p - 4));
        Assert.Equal(MemoryViolationKind.InteriorPointer, violation.Kind);
        Assert.Contains("4 bytes before the start of (in the header of)", violation.Summary);
        runtime[kind].Free(p);
        Assert.Equal(0, runtime.GetStatistics().LiveBlocks);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void An_interior_pointer_deep_inside_a_large_block_is_found_across_shadow_chunks(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator);
        const int Size = 3 << 20; // spans several 1 MiB shadow chunks
        byte* p = (byte*)runtime[kind].Malloc(Size);
        foreach (int offset in new[] { 16, 1 << 20, (2 << 20) + 8, Size - 16, Size + 8 })
        {
            MemoryViolation violation = DebugRuntimes.Catch(() => runtime[kind].Free(p + offset));
            Assert.Equal(MemoryViolationKind.InteriorPointer, violation.Kind);
            Assert.Contains($"It lies {offset} bytes after the start of the block below.", violation.Report);
            Assert.Equal((nuint)Size, violation.RequestedSize);
        }

        runtime[kind].Free(p);
        Assert.Equal(0, runtime[kind].LiveBlocks);
    }

    [Theory]
    [ClassData(typeof(DebugBaseAllocatorsAndDomains))]
    public void A_free_of_a_block_from_another_runtime_is_an_unknown_pointer(string allocator, MemoryDomainKind kind)
    {
        using RuntimeMemory mine = DebugRuntimes.Create(allocator);
        using RuntimeMemory other = DebugRuntimes.Create(allocator);
        void* p = other[kind].Malloc(16);
        Assert.Equal(MemoryViolationKind.UnknownPointer, DebugRuntimes.Catch(() => mine[kind].Free(p)).Kind);
        other[kind].Free(p);
    }
}
