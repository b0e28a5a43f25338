using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics.X86;

namespace Runtime.Memory.Debugging;

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
/// <item>free, in CPython's order: is the pointer a live block of this runtime (the shadow map answers without
/// touching the pointer: else an interior or foreign pointer, or a block freed already), was it allocated by this
/// domain (the API id), is the header intact (id and leading pad, then the size field, which CPython cannot check),
/// is the trailer intact (trailing pad and serial number). Then the whole block, guard bytes included, is filled
/// with 0xDD and given back.</item>
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
/// the hooks on or off. A refused free is counted nowhere, whatever hooks sit above this one (see <see cref="MemoryAllocator.NoteRefusedFree"/>).</para>
/// </remarks>
public sealed unsafe class DebugHook : MemoryHook
{
    /// <summary>How far below a pointer an interior-pointer report looks for the block it lies in.</summary>
    private const nuint InteriorSearchDistance = 64 << 20;

    private readonly MemoryDebugger _debugger;
    private readonly DebugShadowMap _shadow;
    private readonly MemoryDomainKind _domain;

    /// <summary>The domain this hook serves.</summary>
    internal MemoryDomainKind DomainKind => _domain;
    private readonly byte _api;
    private readonly bool _guardPages;
    private readonly byte _liveCode;
    private readonly byte _busyCode;
    private readonly byte _freedCode;

    /// <summary>Whether the allocator below is the small-object allocator (whose free reads the block's pool header).</summary>
    private bool InnerIsSmallObjects => Inner is SmallObjectAllocator;

    /// <summary>Freed blocks held back from the allocator below (guard-byte mode with a quarantine), else null.</summary>
    private readonly FreeQuarantine? _quarantine;

    /// <summary>Unknown pointers still to pass to the allocator below: the domain's live blocks when the hook was installed.</summary>
    private long _adopted;

    internal DebugHook(MemoryDomainKind domain, MemoryDebugger debugger)
    {
        _domain = domain;
        _api = domain.ToApiId();
        _debugger = debugger;
        _shadow = debugger.Shadow;
        _guardPages = debugger.GuardPages;
        _liveCode = DebugShadowMap.Code(BlockState.Live, domain);
        _busyCode = DebugShadowMap.Code(BlockState.Busy, domain);
        _freedCode = DebugShadowMap.Code(BlockState.Freed, domain);
        _quarantine = !_guardPages && debugger.QuarantineBytes > 0 ? new FreeQuarantine(debugger.QuarantineBytes) : null;
    }

    /// <summary>The quarantine of freed blocks, or null (guard pages, or <c>QuarantineBytes</c> = 0).</summary>
    internal FreeQuarantine? FreeQuarantine => _quarantine;

    /// <inheritdoc/>
    public override string Name => _guardPages ? "debug(guard pages)" : "debug";

    /// <inheritdoc/>
    internal override DebugHook? AsDebugHook => this;

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
    public override void* Malloc(nuint size) => Allocate(size, zeroed: false);

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size) => CallocCounted(count, size, out _);

    /// <inheritdoc/>
    public override void* Realloc(void* ptr, nuint newSize) =>
        ptr == null ? Allocate(newSize, zeroed: false) : ReallocCounted(ptr, newSize, out _, out _);

    /// <inheritdoc/>
    /// <remarks>A free this hook refuses (a misuse it reported under <see cref="ViolationAction.Log"/>) is remembered on
    /// the calling thread, so that the domain does not count it even when other hooks sit above this one.</remarks>
    public override void Free(void* ptr)
    {
        if (ptr != null && !FreeCounted(ptr, out _))
        {
            NoteRefusedFree(ptr);
        }
    }

    /// <summary>
    /// The size requested for a live block of this domain; for a block from before the hook, the allocator below's
    /// answer; 0 for anything else. Nothing is read from a pointer the shadow map does not know as a live block.
    /// </summary>
    public override nuint BlockSize(void* ptr)
    {
        byte code = Shadow(ptr);
        if (code == _liveCode || code == _busyCode)
        {
            nuint n = DebugLayout.ReadSize((byte*)ptr);
            return SizeFits((byte*)ptr, n) ? n : RecoverSize((byte*)ptr);
        }

        return code == 0 && AdoptedBlocks > 0 ? Inner.BlockSize(ptr) : 0;
    }

    // ---- what the domain calls (sizes without a second lookup) -----------------------------------------------

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

    /// <remarks>Cost: the shadow byte (three loads), the header and trailer words, the allocator below's block size
    /// (to trust the size field), one byte compare-exchange, the 0xDD fill, and the allocator below's free.</remarks>
    internal override bool FreeCounted(void* ptr, out nuint blockSize)
    {
        byte* data = (byte*)ptr;
        if (Sse.IsSupported)
        {
            Sse.Prefetch0(data - DebugLayout.HeaderSize); // a prefetch never faults: the header's miss overlaps the shadow lookup
        }

        byte code = Shadow(ptr);
        if (code == _liveCode)
        {
            // The allocator below knows how big the block is (from memory it keeps hot), which places the trailer
            // to within 16 bytes: its cache line is fetched while the header is read, so the two misses overlap.
            nuint held = _guardPages ? 0 : Inner.BlockSize(data - DebugLayout.HeaderSize);
            if (Sse.IsSupported && held >= DebugLayout.Overhead)
            {
                Sse.Prefetch0(data + held - DebugLayout.Overhead);
            }

            nuint n = DebugLayout.ReadSize(data);
            if (Intact(data, n, held))
            {
                if (_quarantine is { } quarantine && quarantine.Takes(n))
                {
                    if (FreeIntoQuarantine(quarantine, data, n, MemoryOperation.Free))
                    {
                        blockSize = n;
                        return true;
                    }
                }
                else if (_shadow.TryChange((nuint)data, _liveCode, _freedCode))
                {
                    blockSize = n;
                    Release(data, n);
                    return true;
                }
            }

            code = Shadow(ptr); // damaged, or freed by another thread a moment ago
        }
        else if (code == 0 && TryTakeAdopted())
        {
            blockSize = Inner.BlockSize(ptr);
            Inner.Free(ptr);
            return true;
        }

        blockSize = 0;
        Violation(code, MemoryOperation.Free, data);
        return false;
    }

    internal override void* ReallocCounted(void* ptr, nuint newSize, out nuint oldBlockSize, out nuint newBlockSize)
    {
        oldBlockSize = 0;
        newBlockSize = 0;
        byte* data = (byte*)ptr;
        byte code = Shadow(ptr);
        if (code == 0 && AdoptedBlocks > 0)
        {
            // A block from before the hook: the allocator below resizes it, and it stays unchecked.
            oldBlockSize = Inner.BlockSize(ptr);
            void* resized = Inner.Realloc(ptr, newSize);
            newBlockSize = resized == null ? 0 : Inner.BlockSize(resized);
            return resized;
        }

        nuint n = code == _liveCode ? DebugLayout.ReadSize(data) : 0;
        bool intact = code == _liveCode && Intact(data, n);
        FreeQuarantine? quarantine = intact && _quarantine is { } q && q.Takes(n) ? q : null;
        if (quarantine is not null)
        {
            MakeRoom(quarantine, n + DebugLayout.Overhead, MemoryOperation.Realloc); // before anything changes: a report may throw
        }

        if (!intact || !_shadow.TryChange((nuint)data, _liveCode, _busyCode))
        {
            quarantine?.Unreserve(n + DebugLayout.Overhead);
            Violation(code == _liveCode ? Shadow(ptr) : code, MemoryOperation.Realloc, data);
            return null;
        }

        byte* moved = Allocate(newSize, zeroed: false);
        if (moved == null)
        {
            quarantine?.Unreserve(n + DebugLayout.Overhead);
            _shadow.TryChange((nuint)data, _busyCode, _liveCode); // the old block is live and unchanged
            return null;
        }

        DebugLayout.Copy(data, moved, Math.Min(n, newSize)); // bytes past the old size stay 0xCD
        _shadow.TryChange((nuint)data, _busyCode, _freedCode);
        if (quarantine is not null)
        {
            Quarantine(quarantine, data, n);
        }
        else
        {
            Release(data, n);
        }

        oldBlockSize = n;
        newBlockSize = newSize;
        return moved;
    }

    // ---- blocks ---------------------------------------------------------------------------------------------

    /// <summary>Allocates, lays out and marks a block of <paramref name="size"/> data bytes.</summary>
    private byte* Allocate(nuint size, bool zeroed)
    {
        if (size > DebugLayout.MaxSize)
        {
            return null;
        }

        byte* data;
        nuint extentStart;
        if (_guardPages)
        {
            data = GuardPageBlocks.Allocate(size); // fresh pages are zeroed
            extentStart = (nuint)data - DebugLayout.GuardHeaderSize;
        }
        else
        {
            byte* block = (byte*)(zeroed ? Inner.Calloc(1, size + DebugLayout.Overhead) : Inner.Malloc(size + DebugLayout.Overhead));
            data = block == null ? null : block + DebugLayout.HeaderSize;
            extentStart = (nuint)block;
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
            DebugLayout.WriteGuardFields(data, size, serial);
            DebugLayout.WriteSlack(data, size);
        }
        else
        {
            DebugLayout.WriteTrailer(data, size, serial);
        }

        if (!_shadow.MarkLive((nuint)data, extentStart, (nuint)data + size + DebugLayout.TrailerSize, _liveCode))
        {
            GiveBack(data, size);
            return null;
        }

        return data;
    }

    /// <summary>
    /// Whether the header and trailer of a live block are exactly as written, the size field included: it must agree
    /// with the allocator below (or with its guard-page copy) before the trailer it locates is read.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Intact(byte* data, nuint n) => Intact(data, n, _guardPages ? 0 : Inner.BlockSize(data - DebugLayout.HeaderSize));

    /// <summary><see cref="Intact(byte*, nuint)"/> with the allocator below's block size already read.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool Intact(byte* data, nuint n, nuint held) =>
        DebugLayout.IdAndPadIntact(data, _api)
        && SizeFits(data, n, held)
        && (_guardPages ? DebugLayout.SlackIntact(data, n) : DebugLayout.TrailerIntact(data, n));

    /// <summary>
    /// Whether <paramref name="n"/>, read from a block's size field, can be its size: the allocator below's block
    /// must hold it and its guard bytes (exactly, for the built-in allocators, which know sizes to the byte or to
    /// the 16-byte class); with guard pages, the copy at p-32 must agree.
    /// </summary>
    private bool SizeFits(byte* data, nuint n) => SizeFits(data, n, _guardPages ? 0 : Inner.BlockSize(data - DebugLayout.HeaderSize));

    /// <summary><see cref="SizeFits(byte*, nuint)"/> with the allocator below's block size (<paramref name="held"/>) already read.</summary>
    private bool SizeFits(byte* data, nuint n, nuint held)
    {
        if (n > DebugLayout.MaxSize)
        {
            return false;
        }

        if (_guardPages)
        {
            return DebugLayout.ReadGuardSizeCopy(data) == n;
        }

        MemoryAllocator inner = Inner;
        nuint needed = n + DebugLayout.Overhead;
        return inner switch
        {
            SystemAllocator => held == needed,
            SmallObjectAllocator => needed <= held && held - needed < MemoryDomain.Alignment,
            _ => needed <= held,
        };
    }

    /// <summary>
    /// The size of a live block whose size field is damaged (for reports): where the trailer really is, within the
    /// allocator below's block; with guard pages, the copy at p-32 when it fits the mapping.
    /// </summary>
    private nuint RecoverSize(byte* data)
    {
        if (_guardPages)
        {
            nuint copy = DebugLayout.ReadGuardSizeCopy(data);
            return copy <= DebugLayout.MaxSize && ((nuint)data + DebugLayout.RoundUp16(copy)) % Platform.OsPages.PageSize == 0 ? copy : 0;
        }

        nuint held = Inner.BlockSize(data - DebugLayout.HeaderSize);
        if (held < DebugLayout.Overhead)
        {
            return 0;
        }

        nuint most = held - DebugLayout.Overhead;
        nuint least = Inner is SystemAllocator ? most : most >= MemoryDomain.Alignment - 1 ? most - (MemoryDomain.Alignment - 1) : 0;
        for (nuint m = least; m <= most; m++)
        {
            if (DebugLayout.TrailerIntact(data, m))
            {
                return m;
            }
        }

        return most;
    }

    /// <summary>Fills a block that has just been freed with 0xDD and gives it back (or, with guard pages, retires it into the quarantine).</summary>
    private void Release(byte* data, nuint size)
    {
        if (_guardPages)
        {
            DebugLayout.TryReadSerial(DebugLayout.SerialField(data, size, guardPage: true), out ulong serial); // intact: checked before
            Tracing.Traceback? allocated = null;
            Tracing.Traceback? freed = null;
            if (_debugger.Tracer is { IsTracing: true } tracer)
            {
                tracer.TracebacksForFree((nuint)data, _domain, out allocated, out freed);
            }

            GuardPageBlocks.Retire((nuint)data, size); // inaccessible while in quarantine
            _debugger.Quarantine(new QuarantinedBlock((nuint)data, size, serial, allocated, freed));
            return;
        }

        DebugLayout.Fill(data - DebugLayout.HeaderSize, size + DebugLayout.Overhead, DebugLayout.DeadByte);
        Inner.Free(data - DebugLayout.HeaderSize);
    }

    // ---- the quarantine of freed blocks (guard-byte mode) -------------------------------------------------------

    /// <summary>
    /// Frees a live, intact block into the quarantine: room is made first (the blocks that leave are checked and freed
    /// below; a report may throw, and then this block is untouched and still live), then the block is marked freed,
    /// filled with 0xDD and queued. False when another thread freed it first (the caller reports it).
    /// </summary>
    private bool FreeIntoQuarantine(FreeQuarantine quarantine, byte* data, nuint n, MemoryOperation operation)
    {
        nuint bytes = n + DebugLayout.Overhead;
        MakeRoom(quarantine, bytes, operation);
        if (!_shadow.TryChange((nuint)data, _liveCode, _freedCode))
        {
            quarantine.Unreserve(bytes);
            return false;
        }

        Quarantine(quarantine, data, n);
        return true;
    }

    /// <summary>Fills a block that has just been marked freed with 0xDD and queues it in the room reserved for it.</summary>
    private void Quarantine(FreeQuarantine quarantine, byte* data, nuint n)
    {
        DebugLayout.TryReadSerial(data + n + DebugLayout.FieldSize, out ulong serial); // intact: checked before
        Tracing.Traceback? allocated = null;
        Tracing.Traceback? freed = null;
        if (_debugger.Tracer is { IsTracing: true } tracer)
        {
            tracer.TracebacksForFree((nuint)data, _domain, out allocated, out freed);
        }

        DebugLayout.Fill(data - DebugLayout.HeaderSize, n + DebugLayout.Overhead, DebugLayout.DeadByte);
        quarantine.Commit(new QuarantinedBlock((nuint)data, n, serial, allocated, freed));
    }

    /// <summary>
    /// Reserves <paramref name="bytes"/> in the quarantine; the blocks that must leave to make room are checked
    /// (outside the lock) and freed below, and a changed fill is reported after all of them are freed. When a report
    /// throws, the reservation is given back.
    /// </summary>
    private void MakeRoom(FreeQuarantine quarantine, nuint bytes, MemoryOperation operation)
    {
        int leaving = quarantine.Reserve(bytes, out QuarantinedBlock first, out List<QuarantinedBlock>? more, out nuint next);
        if (Sse.IsSupported && next != 0)
        {
            // The block that leaves next was freed a quarantine ago and is cold: fetch its header (and, below the
            // small-object allocator, its pool's header, which that free reads) while this free goes on. A prefetch never faults.
            Sse.Prefetch0((byte*)next - DebugLayout.HeaderSize);
            if (InnerIsSmallObjects)
            {
                Sse.Prefetch0((void*)((next - DebugLayout.HeaderSize) & ~(nuint)(Allocators.SmallObject.SizeClasses.PoolSize - 1)));
            }
        }

        if (leaving == 0)
        {
            return;
        }

        List<MemoryViolation>? found = Leave(first, operation, null);
        if (more is not null)
        {
            foreach (QuarantinedBlock block in more)
            {
                found = Leave(block, operation, found);
            }

            more.Clear();
        }

        if (found is not null)
        {
            try
            {
                _debugger.ReportAll(found, null);
            }
            catch
            {
                quarantine.Unreserve(bytes);
                throw;
            }
        }
    }

    /// <summary>Checks the fill of a block that leaves the quarantine and frees it below; a damaged one is added to <paramref name="found"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private List<MemoryViolation>? Leave(in QuarantinedBlock block, MemoryOperation operation, List<MemoryViolation>? found)
    {
        if (FreeQuarantine.FirstChanged(block) is { } offset)
        {
            (found ??= []).Add(FreeQuarantine.Report(block, offset, operation, _domain));
        }

        Inner.Free((byte*)block.Data - DebugLayout.HeaderSize);
        return found;
    }

    /// <summary>
    /// Checks every quarantined block and frees it below; reports what changed (under <paramref name="action"/> when
    /// given, else the debugger's). Returns the number of writes after free found.
    /// </summary>
    internal int FlushQuarantine(ViolationAction? action)
    {
        if (_quarantine is not { } quarantine)
        {
            return 0;
        }

        List<MemoryViolation>? found = null;
        foreach (QuarantinedBlock block in quarantine.TakeAll())
        {
            found = Leave(block, MemoryOperation.Flush, found);
        }

        if (found is null)
        {
            return 0;
        }

        _debugger.ReportAll(found, action);
        return found.Count;
    }

    private void GiveBack(byte* data, nuint size)
    {
        if (_guardPages)
        {
            GuardPageBlocks.Unmap((nuint)data, size);
        }
        else
        {
            Inner.Free(data - DebugLayout.HeaderSize);
        }
    }

    /// <summary>The shadow byte of <paramref name="ptr"/>; 0 for a pointer that cannot be a block start (misaligned).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private byte Shadow(void* ptr) => ((nuint)ptr & (MemoryDomain.Alignment - 1)) == 0 ? _shadow.Read((nuint)ptr) : (byte)0;

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
    private void Violation(byte code, MemoryOperation operation, byte* ptr)
    {
        MemoryViolationKind kind;
        BlockRecord? block;
        if (code == 0)
        {
            block = FindContaining(ptr);
            kind = block is null ? MemoryViolationKind.UnknownPointer : MemoryViolationKind.InteriorPointer;
        }
        else
        {
            BlockState state = DebugShadowMap.StateOf(code);
            MemoryDomainKind owner = DebugShadowMap.KindOf(code);
            block = Describe(ptr, code);
            kind = state switch
            {
                BlockState.Freed => MemoryViolationKind.AlreadyFreed,
                BlockState.Busy => MemoryViolationKind.ConcurrentRealloc,
                _ when owner != _domain => MemoryViolationKind.WrongDomain,
                _ => ClassifyCorruption(ptr),
            };
        }

        if (block is { State: BlockState.Freed } freedBlock && _debugger.FindQuarantined(freedBlock.Address) is { } held)
        {
            BlockRecord record = freedBlock;
            record.Quarantined = held;
            block = record;
        }

        string? traceback = block is { State: not BlockState.Freed } b ? _debugger.TracebackOf?.Invoke(b.Address) : null;
        _debugger.Report(ViolationReport.Capture(kind, operation, _domain, (nuint)ptr, block, traceback));
    }

    /// <summary>What a report needs about the block whose data starts at <paramref name="data"/>.</summary>
    private BlockRecord Describe(byte* data, byte code)
    {
        BlockState state = DebugShadowMap.StateOf(code);
        nuint size = 0;
        if (state != BlockState.Freed)
        {
            // Another domain's block is sized by that domain's hook, against that domain's allocator.
            DebugHook owner = _debugger.HookOf(DebugShadowMap.KindOf(code)) ?? this;
            nuint n = DebugLayout.ReadSize(data);
            size = owner.SizeFits(data, n) ? n : owner.RecoverSize(data);
        }

        return new BlockRecord
        {
            Address = (nuint)data,
            Api = DebugShadowMap.KindOf(code).ToApiId(),
            State = state,
            GuardPage = _guardPages,
            Size = size,
        };
    }

    /// <summary>
    /// For a report of damage the allocator below found at <paramref name="address"/> (a block of its own, as a free
    /// list's link): the live debug block that ends just before it, when that block's trailer is damaged too, so the
    /// report can name the overrun that ran into it (with its traceback while tracing); null otherwise. Cold.
    /// </summary>
    internal string? DescribeOverrunInto(nuint address)
    {
        if (_guardPages || !_shadow.TryFindMarkBelow(address, 1 << 16, out nuint below, out byte code)
            || DebugShadowMap.StateOf(code) == BlockState.Freed)
        {
            return null;
        }

        BlockRecord record = Describe((byte*)below, code);
        nuint end = record.Address + record.Size + DebugLayout.TrailerSize;
        if (end > address || address - end >= MemoryDomain.Alignment || DebugLayout.TrailerIntact((byte*)record.Address, record.Size))
        {
            return null;
        }

        string where = address == end ? "ends where it starts" : $"ends {address - end} bytes before it";
        string text = $"    The live block before it, p={ViolationReport.Address(record.Address)} ({record.Size} bytes requested), {where},\n" +
                      "    and its trailer is damaged: an overrun of that block ran into this one.\n";
        return _debugger.TracebackOf?.Invoke(record.Address) is { } traceback ? text + traceback : text;
    }

    /// <summary>The live block whose guard bytes or data contain <paramref name="ptr"/>, if any.</summary>
    private BlockRecord? FindContaining(byte* ptr)
    {
        // In a header: the block starts within the next header's width.
        int header = _guardPages ? DebugLayout.GuardHeaderSize : DebugLayout.HeaderSize;
        nuint next = ((nuint)ptr + MemoryDomain.Alignment) & ~(MemoryDomain.Alignment - 1);
        for (nuint start = next; start <= (nuint)ptr + (nuint)header; start += MemoryDomain.Alignment)
        {
            byte code = _shadow.Read(start);
            if (code != 0 && DebugShadowMap.StateOf(code) != BlockState.Freed)
            {
                return Describe((byte*)start, code);
            }
        }

        // In the data or trailer of a block that starts below.
        if (_shadow.TryFindMarkBelow((nuint)ptr, InteriorSearchDistance, out nuint below, out byte belowCode)
            && DebugShadowMap.StateOf(belowCode) != BlockState.Freed)
        {
            BlockRecord record = Describe((byte*)below, belowCode);
            nuint end = record.Address + record.Size + (nuint)(_guardPages ? (int)DebugLayout.GuardSlack(record.Size) : DebugLayout.TrailerSize);
            if ((nuint)ptr < end)
            {
                return record;
            }
        }

        return null;
    }

    /// <summary>Which guard bytes of a live block are damaged, in CPython's order: the start first.</summary>
    private MemoryViolationKind ClassifyCorruption(byte* data)
    {
        if (!DebugLayout.IdAndPadIntact(data, _api))
        {
            return MemoryViolationKind.BadLeadingPad;
        }

        return SizeFits(data, DebugLayout.ReadSize(data)) ? MemoryViolationKind.BadTrailingPad : MemoryViolationKind.BadSizeField;
    }
}
