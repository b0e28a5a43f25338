using System.Globalization;
using System.Text;

namespace Runtime.Memory.Debugging;

/// <summary>
/// One misuse found by the debug hooks, with the report that describes it: CPython's debug dump (pads byte by byte,
/// the size requested, the serial number, the first and last data bytes) plus what CPython cannot see (double frees,
/// interior and foreign pointers, a damaged size field), and where the block was allocated when tracing knows it.
/// </summary>
/// <remarks>The bytes in the report were copied when the violation was found; the block itself is left as it was
/// (it is leaked, never freed, so its corrupted memory goes back to no allocator).</remarks>
public sealed class MemoryViolation
{
    internal MemoryViolation(MemoryViolationKind kind, MemoryOperation operation, MemoryDomainKind domain, nuint address,
        MemoryDomainKind? allocatedBy, nuint? requestedSize, ulong? serial, string report)
    {
        Kind = kind;
        Operation = operation;
        Domain = domain;
        Address = address;
        AllocatedBy = allocatedBy;
        RequestedSize = requestedSize;
        Serial = serial;
        Report = report;
    }

    /// <summary>What went wrong.</summary>
    public MemoryViolationKind Kind { get; }

    /// <summary>The call that found it.</summary>
    public MemoryOperation Operation { get; }

    /// <summary>The domain the call went through.</summary>
    public MemoryDomainKind Domain { get; }

    /// <summary>The pointer passed to the call.</summary>
    public nuint Address { get; }

    /// <summary>The domain that allocated the block, when the pointer is (or is inside) a known block.</summary>
    public MemoryDomainKind? AllocatedBy { get; }

    /// <summary>Bytes originally requested for the block, when known.</summary>
    public nuint? RequestedSize { get; }

    /// <summary>Number of the debug malloc/realloc call that made the block, when known.</summary>
    public ulong? Serial { get; }

    /// <summary>The first line of <see cref="Report"/>: what went wrong, in one sentence.</summary>
    public string Summary => Report[..Report.IndexOf('\n', StringComparison.Ordinal)];

    /// <summary>The full text report (several lines, ending with a newline).</summary>
    public string Report { get; }

    /// <inheritdoc/>
    public override string ToString() => Report;
}

/// <summary>What the hooks know about the block a violation concerns, for its report.</summary>
internal struct BlockRecord
{
    /// <summary>The block's data pointer.</summary>
    public nuint Address;

    /// <summary>API id of the domain that allocated it ('r', 'm' or 'o'), from the shadow map.</summary>
    public byte Api;

    /// <summary>Live, busy (being reallocated) or freed.</summary>
    public BlockState State;

    /// <summary>Whether the block has its own pages and a guard page.</summary>
    public bool GuardPage;

    /// <summary>The size requested, as far as it can be known: the size field when it is sound, else recovered from
    /// the allocator below (or the guard-page copy). Unknown (0) for a freed block.</summary>
    public nuint Size;

    /// <summary>For a freed block still in the quarantine: what the quarantine keeps of it (size, serial, tracebacks).</summary>
    public QuarantinedBlock? Quarantined;
}

/// <summary>Builds <see cref="MemoryViolation"/> reports from what the hooks know and the block's bytes.</summary>
internal static unsafe class ViolationReport
{
    private const string Ouch = " *** OUCH";

    /// <summary>
    /// Captures a violation. <paramref name="block"/> is the block concerned (for an interior pointer, the block that
    /// contains it); its bytes are read only when it is live or busy (it is ours then, so they are mapped).
    /// </summary>
    public static MemoryViolation Capture(MemoryViolationKind kind, MemoryOperation operation, MemoryDomainKind domain,
        nuint address, BlockRecord? block, string? traceback)
    {
        var text = new StringBuilder();
        string op = OperationName(operation);
        text.Append(CultureInfo.InvariantCulture, $"Memory violation in {op} through the {domain.ToName()} domain: {Headline(kind, operation, domain, address, block)}.\n");

        ulong? serial = null;
        if (block is { } record)
        {
            if (kind == MemoryViolationKind.InteriorPointer)
            {
                text.Append(CultureInfo.InvariantCulture, $"Debug memory block at address p={Address(address)}: not the start of a block\n");
                text.Append(CultureInfo.InvariantCulture, $"    It lies {DescribeOffset(address, record.Address)} the block below.\n");
            }

            serial = DumpBlock(text, record);
            if (record.State != BlockState.Freed)
            {
                text.Append(traceback ?? "Enable allocation tracing to get the traceback where the block was allocated.\n");
            }
        }
        else
        {
            text.Append(CultureInfo.InvariantCulture, $"Debug memory block at address p={Address(address)}: unknown\n");
            text.Append("    No debug hook of this runtime returned this pointer, and it lies inside none of its live blocks.\n");
        }

        return new MemoryViolation(kind, operation, domain, address,
            block is { } b ? DomainOf(b.Api) : null,
            block is { State: not BlockState.Freed } known ? known.Size : block?.Quarantined?.Size,
            serial ?? block?.Quarantined?.Serial,
            text.ToString());
    }

    private static string Headline(MemoryViolationKind kind, MemoryOperation operation, MemoryDomainKind domain, nuint address, BlockRecord? block) => kind switch
    {
        MemoryViolationKind.WrongDomain =>
            $"bad ID: Allocated using API '{(char)block!.Value.Api}', verified using API '{(char)domain.ToApiId()}' " +
            $"(a block of the {DomainOf(block.Value.Api)?.ToName()} domain must be freed and reallocated through that domain)",
        MemoryViolationKind.BadLeadingPad => "bad leading pad byte (something wrote before the start of the block)",
        MemoryViolationKind.BadSizeField => "bad size field (a write before the start of the block reached its size field)",
        MemoryViolationKind.BadTrailingPad when !block!.Value.GuardPage && DebugLayout.TrailingPadIntact((byte*)block.Value.Address, block.Value.Size) =>
            "bad serial number after the trailing pad (something wrote past the end of the block, beyond the pad)",
        MemoryViolationKind.BadTrailingPad => "bad trailing pad byte (something wrote past the end of the block)",
        MemoryViolationKind.AlreadyFreed => operation == MemoryOperation.Free
            ? "double free (the block was freed already)"
            : "realloc of a freed block (the block was freed already)",
        MemoryViolationKind.ConcurrentRealloc => "the block is being reallocated by another thread at this moment",
        MemoryViolationKind.WriteAfterFree => "write after free",
        MemoryViolationKind.InteriorPointer =>
            $"interior pointer ({DescribeOffset(address, block!.Value.Address)} a block, not its start)",
        _ => "a pointer this runtime's debug hooks never returned (a foreign pointer, or one into memory that is not a live block)",
    };

    /// <summary>The call as reports name it: <c>malloc</c>, <c>calloc</c>, <c>realloc</c>, <c>free</c>.</summary>
    internal static string OperationName(MemoryOperation operation) => operation switch
    {
        MemoryOperation.Free => "free",
        MemoryOperation.Realloc => "realloc",
        MemoryOperation.Malloc => "malloc",
        MemoryOperation.Flush => "a quarantine flush",
        _ => "calloc",
    };

    /// <summary>
    /// A report of corruption a built-in allocator found in its own bookkeeping (<see cref="MemoryViolationKind.HeapCorruption"/>)
    /// or of a fault it raised (<see cref="MemoryViolationKind.AllocatorFault"/>): the first line names the call, the
    /// domain and what was found; the lines after it say what it means.
    /// </summary>
    public static MemoryViolation Corruption(MemoryViolationKind kind, MemoryOperation operation, MemoryDomainKind? domain,
        string allocator, nuint address, string headline, string details, bool hooked)
    {
        string where = domain is { } d ? $"the {d.ToName()} domain's allocator '{allocator}'" : $"allocator '{allocator}'";
        string title = kind == MemoryViolationKind.AllocatorFault ? "Memory corruption (allocator fault)" : "Memory corruption (heap corruption)";
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{title} in {OperationName(operation)} through {where}: {headline}.\n");
        text.Append(details);
        if (details.Length > 0 && details[^1] != '\n')
        {
            text.Append('\n');
        }

        text.Append("    This is not an allocation failure: the allocator's own bookkeeping is damaged, and nothing it hands out\n");
        text.Append("    can be trusted.");
        text.Append(hooked
            ? "\n"
            : " With the debug hooks on (RuntimeMemory:Allocator=pymalloc_debug) and tracing, the misuse\n    that caused it is usually reported where it happens, or named here.\n");
        return new MemoryViolation(kind, operation, domain ?? default, address, null, null, null, text.ToString());
    }

    private static string DescribeOffset(nuint address, nuint start) => address >= start
        ? $"{Bytes(address - start)} after the start of"
        : $"{Bytes(start - address)} before the start of (in the header of)";

    private static string Bytes(nuint count) => count == 1 ? "1 byte" : $"{count} bytes";

    /// <summary>
    /// CPython's dump (<c>_PyObject_DebugDumpAddress</c>), line for line, plus the fields CPython trusts blindly (the
    /// size field, the API id byte, the serial number). Returns the serial number when it is readable.
    /// </summary>
    private static ulong? DumpBlock(StringBuilder text, BlockRecord record)
    {
        byte* p = (byte*)record.Address;
        text.Append(CultureInfo.InvariantCulture, $"Debug memory block at address p={Address(record.Address)}: API '{(char)record.Api}'\n");
        if (record is { State: BlockState.Freed, Quarantined: { } held })
        {
            text.Append(record.GuardPage
                ? "    The block was freed already and is still in the quarantine (its pages inaccessible, not yet\n    unmapped):\n"
                : "    The block was freed already and is still in the quarantine (filled with DEADBYTE, not yet given\n    back to the allocator):\n");
            text.Append(CultureInfo.InvariantCulture, $"    {held.Size} bytes originally requested\n");
            text.Append(CultureInfo.InvariantCulture, $"    The block was made by call #{held.Serial} to debug malloc/realloc.\n");
            FreeQuarantine.AppendTracebacks(text, held.Allocated, held.Freed);
            return null;
        }

        if (record.State == BlockState.Freed)
        {
            text.Append("    The block was freed already: its memory went back to the allocator, and no debug block has\n");
            text.Append("    started at this address since. Its size and serial number went with it.\n");
            return null;
        }

        nuint n = record.Size;
        text.Append(CultureInfo.InvariantCulture, $"    {n} bytes originally requested\n");

        // The size field (p-16 .. p-9) and the API id byte (p-8): CPython trusts both; they are checked here.
        Span<byte> expectedSize = stackalloc byte[DebugLayout.FieldSize];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(expectedSize, n);
        var size = new ReadOnlySpan<byte>(p - DebugLayout.HeaderSize, DebugLayout.FieldSize);
        if (!size.SequenceEqual(expectedSize))
        {
            text.Append(CultureInfo.InvariantCulture, $"    The size field at p-{DebugLayout.HeaderSize} does not hold {n} (big-endian):\n");
            for (int i = 0; i < DebugLayout.FieldSize; i++)
            {
                text.Append(CultureInfo.InvariantCulture, $"        at p-{DebugLayout.HeaderSize - i}: 0x{size[i]:x2}{(size[i] != expectedSize[i] ? Ouch : "")}\n");
            }
        }

        byte id = p[-DebugLayout.FieldSize];
        if (id != record.Api)
        {
            text.Append(CultureInfo.InvariantCulture, $"    The API id byte at p-{DebugLayout.FieldSize} is 0x{id:x2}, not '{(char)record.Api}'{Ouch}\n");
        }

        // Leading pad, p-7 .. p-1, listed from p-7 as CPython does.
        var leading = new ReadOnlySpan<byte>(p - DebugLayout.LeadingPadSize, DebugLayout.LeadingPadSize);
        AppendPad(text, leading, $"at p-{DebugLayout.LeadingPadSize}", i => $"p-{DebugLayout.LeadingPadSize - i}");

        // Trailing pad: 8 forbidden bytes, or with guard pages the 0..15 slack bytes before the guard page.
        byte* tail = p + n;
        if (record.GuardPage)
        {
            int slack = (int)DebugLayout.GuardSlack(n);
            if (slack == 0)
            {
                text.Append("    No pad bytes at tail: the data ends at an inaccessible guard page.\n");
            }
            else
            {
                AppendPad(text, new ReadOnlySpan<byte>(tail, slack), $"at tail={Address((nuint)tail)}", i => $"tail+{i}");
                text.Append("    An inaccessible guard page follows them.\n");
            }
        }
        else
        {
            AppendPad(text, new ReadOnlySpan<byte>(tail, DebugLayout.FieldSize), $"at tail={Address((nuint)tail)}", i => $"tail+{i}");
        }

        byte* serialField = DebugLayout.SerialField(p, n, record.GuardPage);
        ulong? serial = null;
        if (DebugLayout.TryReadSerial(serialField, out ulong number))
        {
            serial = number;
            text.Append(CultureInfo.InvariantCulture, $"    The block was made by call #{number} to debug malloc/realloc.\n");
        }
        else
        {
            string where = record.GuardPage ? $"p-{DebugLayout.GuardHeaderSize - DebugLayout.FieldSize}" : $"tail+{DebugLayout.FieldSize}";
            text.Append(CultureInfo.InvariantCulture, $"    The serial number at {where} is damaged (its check byte does not match), so the call that made the block is unknown:\n");
            for (int i = 0; i < DebugLayout.FieldSize; i++)
            {
                string at = record.GuardPage ? $"p-{DebugLayout.GuardHeaderSize - DebugLayout.FieldSize - i}" : $"tail+{DebugLayout.FieldSize + i}";
                text.Append(CultureInfo.InvariantCulture, $"        at {at}: 0x{serialField[i]:x2}\n");
            }
        }

        AppendData(text, p, n);
        return serial;
    }

    private static void AppendPad(StringBuilder text, ReadOnlySpan<byte> pad, string where, Func<int, string> offset)
    {
        if (!pad.ContainsAnyExcept(DebugLayout.ForbiddenByte))
        {
            text.Append(CultureInfo.InvariantCulture, $"    The {pad.Length} pad bytes {where} are FORBIDDENBYTE, as expected.\n");
            return;
        }

        text.Append(CultureInfo.InvariantCulture, $"    The {pad.Length} pad bytes {where} are not all FORBIDDENBYTE (0x{DebugLayout.ForbiddenByte:x2}):\n");
        for (int i = 0; i < pad.Length; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $"        at {offset(i)}: 0x{pad[i]:x2}{(pad[i] != DebugLayout.ForbiddenByte ? Ouch : "")}\n");
        }
    }

    /// <summary>"Data at p:" with up to 8 bytes from the start and 8 from the end, as CPython prints it.</summary>
    private static void AppendData(StringBuilder text, byte* p, nuint n)
    {
        if (n == 0)
        {
            return;
        }

        text.Append("    Data at p:");
        nuint i = 0;
        for (; i < n && i < 8; i++)
        {
            text.Append(CultureInfo.InvariantCulture, $" {p[i]:x2}");
        }

        if (i < n)
        {
            if (n - i > 8)
            {
                text.Append(" ...");
                i = n - 8;
            }

            for (; i < n; i++)
            {
                text.Append(CultureInfo.InvariantCulture, $" {p[i]:x2}");
            }
        }

        text.Append('\n');
    }

    /// <summary>A pointer as fixed-width hex (16 digits on 64-bit), so reports line up and scrub reliably.</summary>
    internal static string Address(nuint address) =>
        "0x" + ((ulong)address).ToString(nuint.Size == 8 ? "x16" : "x8", CultureInfo.InvariantCulture);

    private static MemoryDomainKind? DomainOf(byte api) => api switch
    {
        (byte)'r' => MemoryDomainKind.Raw,
        (byte)'m' => MemoryDomainKind.Mem,
        (byte)'o' => MemoryDomainKind.Obj,
        _ => null,
    };
}
