using Runtime.Memory.Accounting;
using Runtime.Memory.Threading;

namespace Runtime.Memory.Pipeline;

/// <summary>
/// What a domain's front door calls: the whole of one operation (the chain's work and the domain's accounting) for
/// the chain's shape, built once per chain change (<see cref="MemoryDomain"/> rebuilds it under the chain lock) so
/// that nothing is decided per call.
/// </summary>
/// <remarks>
/// <para><b>Who builds which.</b> The allocator on top of the chain chooses (<see cref="MemoryAllocator.CreatePipeline"/>):
/// each built-in base allocator has its own specialised pipeline (<see cref="SmallObjectPipeline{TBudget}"/>,
/// <see cref="SystemPipeline{TBudget}"/>), the tracer's hook has one over the small-object allocator, the closed chain
/// of a disposed runtime has <see cref="ClosedPipeline"/>, and every other chain (user allocators and hooks, the debug
/// hooks, mimalloc) gets <see cref="ContractPipeline{TBudget}"/>, which calls the public contract behind the exception
/// barrier. So a new built-in allocator or hook brings its own pipeline; the domain is never edited for it.</para>
/// <para><b>Composition.</b> Pipelines are sealed generic classes over struct parameters (the budget mode
/// <see cref="IBudgetMode"/>), so each shape is compiled as its own code with the decisions folded away. The front door
/// makes one virtual call; with one shape per call site the JIT's guarded devirtualisation inlines it.</para>
/// <para><b>Contract with the front door.</b> The request has been checked (size ≤ <see cref="MemoryDomain.MaxRequestSize"/>,
/// calloc's product does not overflow, realloc's and free's pointer not null), and the call counted in flight in
/// <c>context</c> (<see cref="ThreadContext.InCall"/>). A pipeline returns normally in every case it handles; one whose
/// chain may throw by design (a violation the debug hooks raise under <see cref="ViolationAction.Throw"/>) uncounts the
/// call itself before the exception leaves it (<see cref="MemoryDomain.Leave"/>).</para>
/// </remarks>
internal abstract unsafe class DomainPipeline(PipelineSite site)
{
    /// <summary>The domain this pipeline serves (its cold paths: failures, refusals, faults).</summary>
    protected readonly MemoryDomain Domain = site.Domain;

    /// <summary>The domain's index in the accounting and in each <see cref="ThreadContext"/>.</summary>
    protected readonly int Index = site.Index;

    /// <summary>The runtime's accounting.</summary>
    protected readonly MemoryAccounting Accounting = site.Accounting;

    /// <summary>Malloc of a checked size.</summary>
    public abstract void* Malloc(ThreadContext* context, nuint size);

    /// <summary>Calloc whose product is checked.</summary>
    public abstract void* Calloc(ThreadContext* context, nuint count, nuint size);

    /// <summary>Realloc of a non-null block to a checked size.</summary>
    public abstract void* Realloc(ThreadContext* context, void* ptr, nuint newSize);

    /// <summary>Free of a non-null block.</summary>
    public abstract void Free(ThreadContext* context, void* ptr);

    /// <summary>
    /// The small-object allocator a native fast path may keep a per-thread cache of blocks from (the Lua route's, which
    /// hands them out and counts them itself without calling the domain), or null: only where nothing per block is lost
    /// by that, the plain small-object allocator. Tracing, debug hooks and user hooks must see every call.
    /// </summary>
    public virtual SmallObjectAllocator? NativeCacheSource => null;

    /// <summary>
    /// The allocator whose C functions a native fast path may call directly (<see cref="MemoryAllocator.NativeHeap"/>),
    /// or null: only where that allocator is alone on the chain.
    /// </summary>
    public virtual MemoryAllocator? NativeHeapAllocator => null;

    /// <summary>What the pipeline is, for tests and reports (e.g. <c>SmallObjectPipeline&lt;Unlimited&gt;</c>).</summary>
    public override string ToString()
    {
        Type type = GetType();
        return type.IsGenericType
            ? $"{type.Name[..type.Name.IndexOf('`')]}<{string.Join(", ", type.GetGenericArguments().Select(t => t.Name))}>"
            : type.Name;
    }
}

/// <summary>Where a pipeline is built: its domain, with what a pipeline needs of it.</summary>
internal readonly struct PipelineSite(MemoryDomain domain, int index, MemoryAccounting accounting, bool limited)
{
    public MemoryDomain Domain { get; } = domain;

    public int Index { get; } = index;

    public MemoryAccounting Accounting { get; } = accounting;

    /// <summary>Whether the domain has a budget (its realloc then reserves growth before resizing).</summary>
    public bool Limited { get; } = limited;
}

/// <summary>
/// Whether a domain has a budget, as a struct type argument of the pipelines, so that each case is compiled on its own:
/// without one, realloc reserves nothing and checks nothing. (Malloc's budget check rides on the accounting's gate
/// either way: see <see cref="MemoryAccounting"/>.)
/// </summary>
internal interface IBudgetMode
{
    static abstract bool Limited { get; }
}

/// <summary>No budget.</summary>
internal readonly struct NoBudget : IBudgetMode
{
    public static bool Limited => false;
}

/// <summary>A budget is set.</summary>
internal readonly struct WithBudget : IBudgetMode
{
    public static bool Limited => true;
}
