using System.Runtime.CompilerServices;

namespace Runtime.Memory;

/// <summary>
/// The debug hook of one domain (PyMem_SetupDebugHooks): guard bytes around every block, fill patterns, serial
/// numbers, and checks on every free and realloc that report misuse precisely through the runtime's
/// <see cref="MemoryDebugger"/>. Installed by a <c>*_debug</c> allocator name or by
/// <see cref="MemoryDomain.SetupDebugHooks"/>, at most once per domain whatever sits above it.
/// </summary>
/// <remarks>
/// <para><b>What happens when</b> (layout on <see cref="DebugLayout"/>):</para>
/// <list type="bullet">
/// <item>malloc: the allocator below is asked for n + 32 bytes; size, id and pads are written, the data is filled
/// with 0xCD, the serial number is written after the trailing pad, and the block is registered.</item>
/// <item>calloc: the same from a zeroed block, without the 0xCD fill.</item>
/// <item>free, in CPython's order: is the pointer a block of this runtime (else: interior or foreign pointer, or a
/// block freed already), was it allocated by this domain (the API id), is the header intact (leading pad and id,
/// then the size field, which CPython cannot check), is the trailer intact (trailing pad and serial number). Then
/// the whole block, guard bytes included, is filled with 0xDD and given back.</item>
/// <item>realloc: the same checks, then always a new block: the data is copied, the grown part is 0xCD, and the old
/// block is filled with 0xDD and freed. CPython marks only the first and last 64 bytes of a moved-from block dead and
/// lets the allocator resize in place; moving every time means a stale pointer kept across a realloc always sees
/// 0xDD (or, with guard pages, faults).</item>
/// </list>
/// <para><b>Misuse</b> leaves the block alone (it is leaked, never freed) and is handed to
/// <see cref="MemoryDebugger.OnViolation"/>. Under <see cref="ViolationAction.Log"/> a free returns normally and a
/// realloc returns null; the domain then counts the block as still live.</para>
/// <para><b>Blocks from before the hook.</b> When installed over a domain with live blocks, the hook passes up to
/// that many unknown pointers to the allocator below unchecked, since they may be those blocks; pointer checks are
/// complete once they are gone. Installed at start (a <c>*_debug</c> name), every pointer is checked.</para>
/// <para><b>Accounting.</b> <see cref="BlockSize"/> is the size requested, so a domain accounts the same bytes with
/// the hooks on or off. With other hooks above this one, a refused free is still counted as a free by the domain.</para>
/// </remarks>
public sealed unsafe class DebugHook : MemoryHook
{
    private readonly MemoryDebugger _debugger;
    private readonly DebugBlockRegistry _registry;
    private readonly MemoryDomainKind _domain;
    private readonly byte _api;
    private readonly bool _guardPages;

    /// <summary>Unknown pointers still to pass to the allocator below: the domain's live blocks when the hook was installed.</summary>
    private long _adopted;

    internal DebugHook(MemoryDomainKind domain, MemoryDebugger debugger)
    {
        _domain = domain;
        _api = domain.ToApiId();
        _debugger = debugger;
        _registry = debugger.Registry;
        _guardPages = debugger.GuardPages;
    }

    /// <inheritdoc/>
    public override string Name => _guardPages ? "debug(guard pages)" : "debug";

    /// <summary>Always true: blocks carry guard bytes the allocator below does not know about.</summary>
    public override bool ChangesBlockLayout => true;

    /// <summary>The runtime's debug state this hook reports to.</summary>
    public MemoryDebugger Debugger => _debugger;

    /// <summary>Blocks allocated before the hook was installed that it will still pass through unchecked.</summary>
    public long AdoptedBlocks => Interlocked.Read(ref _adopted);

    /// <summary>Sets how many unknown pointers to pass through (the domain's live blocks at install time).</summary>
    internal void Adopt(long liveBlocks) => Interlocked.Exchange(ref _adopted, Math.Max(0, liveBlocks));

    // ---- the allocator contract -------------------------------------------------------------------------------

    /// <inheritdoc/>
    public override void* Malloc(nuint size) => MallocCounted(size, out _);

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size) => CallocCounted(count, size, out _);

    /// <inheritdoc/>
    public override void* Realloc(void* ptr, nuint newSize) =>
        ptr == null ? MallocCounted(newSize, out _) : ReallocCounted(ptr, newSize, out _, out _);

    /// <inheritdoc/>
    public override void Free(void* ptr)
    {
        if (ptr != null)
        {
            FreeCounted(ptr, out _);
        }
    }

    /// <summary>The size requested for a live block; 0 for a pointer that is not one (no memory is read).</summary>
    public override nuint BlockSize(void* ptr)
    {
        if (_registry.TryGet((nuint)ptr, out BlockRecord record))
        {
            return record.State == BlockState.Freed ? 0 : record.Size;
        }

        return AdoptedBlocks > 0 ? Inner.BlockSize(ptr) : 0;
    }

    // ---- what the domain calls (sizes without a second registry lookup) --------------------------------------

    internal override void* MallocCounted(nuint size, out nuint blockSize)
    {
        blockSize = size;
        return Allocate(size, zeroed: false);
    }

    internal override void* CallocCounted(nuint count, nuint size, out nuint blockSize)
    {
        blockSize = 0;
        if (!SizeMath.TryMultiply(count, size, out nuint total))
        {
            return null;
        }

        blockSize = total;
        return Allocate(total, zeroed: true);
    }

    internal override bool FreeCounted(void* ptr, out nuint blockSize)
    {
        RegistryStatus status = _registry.TryFree((nuint)ptr, _api, _debugger.Calls, out BlockRecord record, out BlockRecord evicted);
        if (status == RegistryStatus.Ok)
        {
            blockSize = record.Size;
            Release(record);
            ForgetEvicted(evicted);
            return true;
        }

        if (status == RegistryStatus.NotFound && TryTakeAdopted())
        {
            blockSize = Inner.BlockSize(ptr);
            Inner.Free(ptr);
            return true;
        }

        blockSize = 0;
        Violation(status, MemoryOperation.Free, ptr, record);
        return false;
    }

    internal override void* ReallocCounted(void* ptr, nuint newSize, out nuint oldBlockSize, out nuint newBlockSize)
    {
        oldBlockSize = 0;
        newBlockSize = 0;
        RegistryStatus status = _registry.TryBeginRealloc((nuint)ptr, _api, out BlockRecord record);
        if (status == RegistryStatus.NotFound && AdoptedBlocks > 0)
        {
            // A block from before the hook: the allocator below resizes it, and it stays unchecked.
            oldBlockSize = Inner.BlockSize(ptr);
            void* resized = Inner.Realloc(ptr, newSize);
            newBlockSize = resized == null ? 0 : Inner.BlockSize(resized);
            return resized;
        }

        if (status != RegistryStatus.Ok)
        {
            Violation(status, MemoryOperation.Realloc, ptr, record);
            return null;
        }

        byte* moved = Allocate(newSize, zeroed: false);
        if (moved == null)
        {
            _registry.EndRealloc((nuint)ptr, moved: false, 0, out _);
            return null; // the old block is live and unchanged
        }

        DebugLayout.Copy((byte*)ptr, moved, Math.Min(record.Size, newSize)); // bytes past the old size stay 0xCD
        _registry.EndRealloc((nuint)ptr, moved: true, _debugger.Calls, out BlockRecord evicted);
        Release(record);
        ForgetEvicted(evicted);
        oldBlockSize = record.Size;
        newBlockSize = newSize;
        return moved;
    }

    // ---- blocks ---------------------------------------------------------------------------------------------

    /// <summary>Allocates, lays out and registers a block of <paramref name="size"/> data bytes.</summary>
    private byte* Allocate(nuint size, bool zeroed)
    {
        if (size > DebugLayout.MaxSize)
        {
            return null;
        }

        byte* data;
        if (_guardPages)
        {
            data = GuardPageBlocks.Allocate(size); // fresh pages are zeroed
        }
        else
        {
            byte* block = (byte*)(zeroed ? Inner.Calloc(1, size + DebugLayout.Overhead) : Inner.Malloc(size + DebugLayout.Overhead));
            data = block == null ? null : block + DebugLayout.HeaderSize;
        }

        if (data == null)
        {
            return null;
        }

        ulong serial = _debugger.NextSerial();
        DebugLayout.WriteHeader(data, size, _api);
        if (!zeroed)
        {
            DebugLayout.Fill(data, size, DebugLayout.CleanByte);
        }

        if (_guardPages)
        {
            DebugLayout.WriteSlack(data, size);
        }
        else
        {
            DebugLayout.WriteTrailer(data, size, serial);
        }

        if (!_registry.Insert((nuint)data, size, _api, serial, _guardPages))
        {
            GiveBack(data, size, _guardPages);
            return null;
        }

        return data;
    }

    /// <summary>Marks a block that has just been freed in the registry dead, and gives it back.</summary>
    private void Release(BlockRecord record)
    {
        byte* data = (byte*)record.Address;
        if (record.GuardPage)
        {
            GuardPageBlocks.Retire(record.Address, record.Size); // stays inaccessible while in quarantine
            return;
        }

        DebugLayout.Fill(data - DebugLayout.HeaderSize, record.Size + DebugLayout.Overhead, DebugLayout.DeadByte);
        GiveBack(data, record.Size, guardPage: false);
    }

    private void GiveBack(byte* data, nuint size, bool guardPage)
    {
        if (guardPage)
        {
            GuardPageBlocks.Unmap((nuint)data, size);
        }
        else
        {
            Inner.Free(data - DebugLayout.HeaderSize);
        }
    }

    /// <summary>A freed guard-page block pushed out of the quarantine is unmapped now.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void ForgetEvicted(BlockRecord evicted)
    {
        if (evicted.GuardPage)
        {
            GuardPageBlocks.Unmap(evicted);
        }
    }

    private bool TryTakeAdopted()
    {
        long adopted = Interlocked.Read(ref _adopted);
        while (adopted > 0)
        {
            long seen = Interlocked.CompareExchange(ref _adopted, adopted - 1, adopted);
            if (seen == adopted)
            {
                return true;
            }

            adopted = seen;
        }

        return false;
    }

    // ---- reports (cold) -------------------------------------------------------------------------------------

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void Violation(RegistryStatus status, MemoryOperation operation, void* ptr, BlockRecord record)
    {
        BlockRecord? block = record;
        MemoryViolationKind kind;
        switch (status)
        {
            case RegistryStatus.WrongApi:
                kind = MemoryViolationKind.WrongDomain;
                break;
            case RegistryStatus.AlreadyFreed:
                kind = MemoryViolationKind.AlreadyFreed;
                break;
            case RegistryStatus.Busy:
                kind = MemoryViolationKind.ConcurrentRealloc;
                break;
            case RegistryStatus.Corrupt:
                kind = ClassifyCorruption(record);
                break;
            default:
                if (_registry.TryFindContaining((nuint)ptr, out BlockRecord containing))
                {
                    kind = MemoryViolationKind.InteriorPointer;
                    block = containing;
                }
                else
                {
                    kind = MemoryViolationKind.UnknownPointer;
                    block = null;
                }

                break;
        }

        string? traceback = block is { } b ? _debugger.TracebackOf?.Invoke(b.Address) : null;
        _debugger.Report(ViolationReport.Capture(kind, operation, _domain, (nuint)ptr, block, traceback));
    }

    /// <summary>Which guard bytes of a live block are damaged, in CPython's order: the start first.</summary>
    private static MemoryViolationKind ClassifyCorruption(BlockRecord record)
    {
        byte* data = (byte*)record.Address;
        bool idAndPadIntact = data[-DebugLayout.FieldSize] == record.Api
            && !new ReadOnlySpan<byte>(data - DebugLayout.LeadingPadSize, DebugLayout.LeadingPadSize).ContainsAnyExcept(DebugLayout.ForbiddenByte);
        if (!idAndPadIntact)
        {
            return MemoryViolationKind.BadLeadingPad;
        }

        return DebugLayout.HeaderIntact(data, record.Size, record.Api) ? MemoryViolationKind.BadTrailingPad : MemoryViolationKind.BadSizeField;
    }
}
