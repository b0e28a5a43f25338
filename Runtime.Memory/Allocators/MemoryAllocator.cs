namespace Runtime.Memory.Allocators;

/// <summary>
/// The allocator contract of one domain: PEP 445's <c>PyMemAllocatorEx</c> seen from C#.
/// </summary>
/// <remarks>
/// <para>
/// A <see cref="MemoryDomain"/> calls its allocator only with requests it has already checked: sizes are at
/// most <see cref="MemoryDomain.MaxRequestSize"/> and <c>count × size</c> of a calloc does not overflow.
/// Allocators called directly (outside a domain) must make those checks themselves; the built-in ones do.
/// </para>
/// <para>What every implementation must guarantee:</para>
/// <list type="bullet">
/// <item>Failure is a <see langword="null"/> return, never an exception.</item>
/// <item>A request for zero bytes (or a calloc with a zero count or size) returns a distinct, non-null block.</item>
/// <item>Every block is 16-byte aligned (<see cref="MemoryDomain.Alignment"/>).</item>
/// <item><see cref="Realloc"/> that fails returns <see langword="null"/> and leaves the old block valid and unchanged.</item>
/// <item><see cref="Free"/> of <see langword="null"/> does nothing.</item>
/// <item><see cref="BlockSize"/> returns the size of a live block as this allocator counts it: at least the size
/// requested, and the same value from allocation until the block is reallocated or freed (the system allocator
/// returns exactly the size requested). Domains account bytes with it on allocation and on free, so their live-byte
/// figures are exact in the allocator's own terms.</item>
/// <item>No exception: a domain turns one into a null return and records it in <see cref="MemoryDomain.LastFault"/>,
/// but an allocator called from native code must never throw.</item>
/// <item>Every method is safe to call from any thread (CPython's rule since 3.12).</item>
/// </list>
/// <para>
/// Wrap an existing allocator by deriving from <see cref="MemoryHook"/> rather than from this class.
/// </para>
/// </remarks>
public abstract unsafe class MemoryAllocator
{
    /// <summary>A short name for reports, e.g. <c>malloc</c>.</summary>
    public virtual string Name => GetType().Name;

    /// <summary>Allocates <paramref name="size"/> uninitialised bytes; <see langword="null"/> on failure.</summary>
    public abstract void* Malloc(nuint size);

    /// <summary>Allocates <paramref name="count"/> × <paramref name="size"/> zeroed bytes; <see langword="null"/> on failure.</summary>
    public abstract void* Calloc(nuint count, nuint size);

    /// <summary>
    /// Resizes <paramref name="ptr"/> to <paramref name="newSize"/> bytes, moving it if needed.
    /// <paramref name="ptr"/> is never <see langword="null"/> when a domain calls this.
    /// </summary>
    public abstract void* Realloc(void* ptr, nuint newSize);

    /// <summary>Releases a block this allocator returned. <see langword="null"/> does nothing.</summary>
    public abstract void Free(void* ptr);

    /// <summary>The size of the live block <paramref name="ptr"/> as this allocator counts it (see the class remarks).</summary>
    public abstract nuint BlockSize(void* ptr);

    // ---- what a domain calls: the operation and the sizes it accounts, in one call ---------------------------
    //
    // By default these are the operation plus BlockSize, as the contract defines them. An allocator that knows the
    // sizes already (the debug hook reads them from the block it has just checked) overrides them to save a lookup, and to say
    // that a free was refused (the block stays live and must not be counted as freed). Internal: user allocators
    // and hooks get the defaults, which are exact for them.

    /// <summary>Malloc, and the <see cref="BlockSize"/> of the block returned (0 on failure).</summary>
    internal virtual void* MallocCounted(nuint size, out nuint blockSize)
    {
        void* p = Malloc(size);
        blockSize = p == null ? 0 : BlockSize(p);
        return p;
    }

    /// <summary>Calloc, and the <see cref="BlockSize"/> of the block returned (0 on failure).</summary>
    internal virtual void* CallocCounted(nuint count, nuint size, out nuint blockSize)
    {
        void* p = Calloc(count, size);
        blockSize = p == null ? 0 : BlockSize(p);
        return p;
    }

    /// <summary>Realloc of a non-null block, and the block sizes before and after (0 on failure).</summary>
    internal virtual void* ReallocCounted(void* ptr, nuint newSize, out nuint oldBlockSize, out nuint newBlockSize)
    {
        oldBlockSize = BlockSize(ptr);
        void* p = Realloc(ptr, newSize);
        newBlockSize = p == null ? 0 : BlockSize(p);
        return p;
    }

    /// <summary>
    /// Free of a non-null block and its <see cref="BlockSize"/>; false when the allocator refused to free it (a
    /// misuse the debug hooks reported), in which case it is still live.
    /// </summary>
    /// <remarks>The default asks <see cref="BlockSize"/>, frees, and then asks whether a built-in hook below refused the
    /// free (<see cref="NoteRefusedFree"/>): a user hook that forwards <see cref="Free"/> cannot say so itself, and a
    /// refused block must be counted nowhere, whatever sits above the hook that refused it.</remarks>
    internal virtual bool FreeCounted(void* ptr, out nuint blockSize)
    {
        blockSize = BlockSize(ptr);
        t_refusedFree = 0;
        Free(ptr);
        return !TakeRefusedFree(ptr);
    }

    /// <summary>
    /// The pipeline a domain runs when this allocator is on top of its chain (built under the chain lock, once per chain
    /// change). The default, for any allocator or hook, calls the contract above behind the domain's exception barrier;
    /// a built-in allocator or hook returns a pipeline specialised for itself (see <see cref="Pipeline.DomainPipeline"/>).
    /// </summary>
    internal virtual Pipeline.DomainPipeline CreatePipeline(in Pipeline.PipelineSite site) =>
        site.Limited ? new Pipeline.ContractPipeline<Pipeline.WithBudget>(this, site) : new Pipeline.ContractPipeline<Pipeline.NoBudget>(this, site);

    /// <summary>
    /// The bytes a domain will account for a request of <paramref name="size"/> bytes, before the allocator is asked
    /// (a budget reserves a resize's growth with it): the request itself unless the allocator rounds it.
    /// </summary>
    internal virtual nuint AccountedSizeOf(nuint size) => size;

    /// <summary>The pool statistics of an allocator that keeps pools (the small-object allocator); null for others.</summary>
    internal virtual SmallObjectStatistics? GetPoolStatistics() => null;

    /// <summary>
    /// The C functions behind this allocator when its blocks are C allocations under the 16-byte size header
    /// (<see cref="SizeHeader"/>), so that native code (the Lua route's fast path) can allocate, resize and free them
    /// as this allocator would; null for any other allocator.
    /// </summary>
    internal virtual NativeHeapFunctions? NativeHeap => null;

    /// <summary>Called when a domain makes this allocator the base of its chain (the small-object allocator reports the
    /// corruption it finds to that domain).</summary>
    internal virtual void AdoptedBy(MemoryDomain domain)
    {
    }

    /// <summary>This allocator as the domain's debug hook, when it is one (a domain installs one at most).</summary>
    internal virtual DebugHook? AsDebugHook => null;

    /// <summary>The last block whose free a built-in hook refused on this thread through the public <see cref="Free"/> (0: none).</summary>
    [ThreadStatic]
    private static nint t_refusedFree;

    /// <summary>
    /// Called by a built-in hook whose public <see cref="Free"/> refused <paramref name="ptr"/> (the debug hooks found a
    /// misuse and keep the block): the <see cref="FreeCounted"/> of whatever called it, a user hook's default included,
    /// then reports the free as refused.
    /// </summary>
    internal static void NoteRefusedFree(void* ptr) => t_refusedFree = (nint)ptr;

    /// <summary>Whether <paramref name="ptr"/>'s free was refused since the last <see cref="FreeCounted"/> began; clears the note.</summary>
    private static bool TakeRefusedFree(void* ptr)
    {
        if (t_refusedFree != (nint)ptr)
        {
            return false;
        }

        t_refusedFree = 0;
        return true;
    }

    /// <inheritdoc/>
    public override string ToString() => Name;
}

/// <summary>A C allocator's malloc, realloc and free, and the mark its <see cref="SizeHeader"/> blocks carry.</summary>
internal readonly record struct NativeHeapFunctions(nint Malloc, nint Realloc, nint Free, nuint Magic);
