using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;
using Runtime.Memory.Threading;
using Runtime.Memory.Tracing;

namespace Runtime.Memory.Pipeline;

/// <summary>
/// The tracer's hook directly over the small-object allocator: the allocator's fast path as
/// <see cref="SmallObjectPipeline{TBudget}"/> runs it, plus the tracer's record or untrack, instead of three virtual
/// calls and the contract's barrier. Calloc and realloc take the contract (<see cref="ContractPipeline{TBudget}"/>).
/// </summary>
/// <remarks>
/// <para><b>Sampling</b> (<typeparamref name="TMode"/> = <see cref="SampledTrace"/>): malloc inlined, so that a call that
/// is not sampled costs the untraced path plus a subtraction and a compare; a free while no sample is live costs one
/// load more, and while samples are live, a free of a block whose address bucket holds no trace (nearly every block)
/// costs a hash and one load more, not the traced path.</para>
/// <para><b>Exact</b> (<see cref="ExactTrace"/>): one out-of-line call each way holding the allocator's fast path and
/// the trace's, so that the caller's loop stays as small as the untraced one and the traced work is register-allocated
/// as one piece. Costs: <c>docs/BENCHMARKS.md</c> (tracing).</para>
/// </remarks>
internal sealed unsafe class TracedSmallObjectPipeline<TBudget, TMode>(TracingHook traced, SmallObjectAllocator small, PipelineSite site)
    : DomainPipeline(site)
    where TBudget : struct, IBudgetMode
    where TMode : struct, ITraceMode
{
    private readonly TracingHook _traced = traced;
    private readonly SmallObjectAllocator _small = small;
    private readonly SmallObjectPipeline<TBudget> _untraced = new(small, site);
    private readonly ContractPipeline<TBudget> _contract = new(traced, site);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void* Malloc(ThreadContext* context, nuint size) =>
        TMode.Sampled ? MallocSampled(context, size) : MallocExact(context, size);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void* MallocSampled(ThreadContext* context, nuint size)
    {
        void* block = MallocUntraced(context, size);
        if (block != null)
        {
            _traced.Sampled(ThreadShard.Of(context), _small, block, size);
        }

        return block;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void* MallocExact(ThreadContext* context, nuint size)
    {
        void* block = MallocUntraced(context, size);
        if (block != null)
        {
            _traced.Traced(ThreadShard.Of(context), _small, block, size);
        }

        return block;
    }

    /// <summary>The allocation and its accounting (the untraced pipeline's); null (counted) on failure or refusal:
    /// nothing is traced then.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void* MallocUntraced(ThreadContext* context, nuint size) => _untraced.Malloc(context, size);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void Free(ThreadContext* context, void* ptr)
    {
        int work = _traced.FreeWork;
        if (work != 0 && (!TraceTable.IsStripesOnly(work) || _traced.MayHoldTrace(ptr)))
        {
            FreeTraced(context, ptr, work);
        }
        else
        {
            // Sampling, and no sample live, or none that can be this block (its bucket is empty).
            FreeUntraced(context, ptr, _small.InPool(ptr));
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void FreeTraced(ThreadContext* context, void* ptr, int work)
    {
        int poolClass = _small.PoolClassIfInPool(ptr); // one ownership lookup for the trace's key and the free
        _traced.Untraced(ThreadShard.Of(context), ptr, poolClass, work); // before the free: the address must not be reused and traced elsewhere while we hold it
        FreeUntraced(context, ptr, poolClass >= 0);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void FreeUntraced(ThreadContext* context, void* ptr, bool pooled) => _untraced.Free(context, ptr, pooled);

    public override void* Calloc(ThreadContext* context, nuint count, nuint size) => _contract.Calloc(context, count, size);

    public override void* Realloc(ThreadContext* context, void* ptr, nuint newSize) => _contract.Realloc(context, ptr, newSize);
}

/// <summary>Whether a traced pipeline samples, as a struct type argument (see <see cref="TracedSmallObjectPipeline{TBudget, TMode}"/>).</summary>
internal interface ITraceMode
{
    static abstract bool Sampled { get; }
}

/// <summary>Every block traced.</summary>
internal readonly struct ExactTrace : ITraceMode
{
    public static bool Sampled => false;
}

/// <summary>A sample of the blocks traced.</summary>
internal readonly struct SampledTrace : ITraceMode
{
    public static bool Sampled => true;
}
