using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;
using Runtime.Memory.Threading;

namespace Runtime.Memory.Pipeline;

/// <summary>
/// The small-object allocator alone on a domain's chain (the default of <c>mem</c> and <c>obj</c>).
/// </summary>
/// <remarks>
/// Cost model of malloc: the domain's slot of the thread's context (heap and counters side by side), a compare of the
/// heap's owner id, the allocator's pop from the class's current pool (<see cref="SmallObjectAllocator.MallocFrom"/>),
/// and the counters' adds and the gate compare (<see cref="Accounting.MemoryAccounting"/>): no lock, no atomic, no
/// virtual call, no managed allocation. Free: the ownership test, the pool header found by masking the address, an owner
/// compare and a push. No exception barrier: the allocator checks the free-list links it follows and reports damage as
/// corruption; what else faults here is a bug of the runtime's and propagates.
/// </remarks>
internal sealed unsafe class SmallObjectPipeline<TBudget>(SmallObjectAllocator small, PipelineSite site) : DomainPipeline(site)
    where TBudget : struct, IBudgetMode
{
    private readonly SmallObjectAllocator _small = small;
    private readonly long _id = small.Id;

    /// <inheritdoc/>
    public override SmallObjectAllocator? NativeCacheSource => _small;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void* Malloc(ThreadContext* context, nuint size)
    {
        ref HeapSlot slot = ref context->Heaps[Index];
        ref DomainCounters counters = ref context->Accounts[Index];
        Heap* heap = slot.HeapOwner == _id ? slot.Heap : null;
        if (heap == null)
        {
            heap = _small.BindHeap(ref slot, create: true);
        }

        void* block = _small.MallocFrom(heap, size);
        if (block == null)
        {
            return Domain.Rejected();
        }

        return Accounting.OnAllocated(ref counters, Index, SmallObjectAllocator.AccountedSize(size)) ? block : Domain.RefusedByLimit(_small, block);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void Free(ThreadContext* context, void* ptr) => Free(context, ptr, _small.InPool(ptr));

    /// <summary>The free, when whether <paramref name="ptr"/> is a pool block is known already (the traced pipeline's
    /// ownership lookup gives it).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Free(ThreadContext* context, void* ptr, bool pooled)
    {
        ref HeapSlot slot = ref context->Heaps[Index];
        ref DomainCounters counters = ref context->Accounts[Index];
        if (!pooled)
        {
            Accounting.OnFreed(ref counters, Index, _small.FreeLarge(ptr));
            return;
        }

        Heap* heap = slot.HeapOwner == _id ? slot.Heap : _small.BindHeap(ref slot, create: false);
        Accounting.OnFreed(ref counters, Index, _small.FreePooled(heap, ptr));
    }

    public override void* Calloc(ThreadContext* context, nuint count, nuint size)
    {
        ref HeapSlot slot = ref context->Heaps[Index];
        ref DomainCounters counters = ref context->Accounts[Index];
        Heap* heap = slot.HeapOwner == _id && slot.Heap != null ? slot.Heap : _small.BindHeap(ref slot, create: true);
        void* block = _small.CallocFrom(heap, count, size, out nuint accounted);
        if (block == null)
        {
            return Domain.Rejected();
        }

        return Accounting.OnAllocated(ref counters, Index, accounted) ? block : Domain.RefusedByLimit(_small, block);
    }

    public override void* Realloc(ThreadContext* context, void* ptr, nuint newSize)
    {
        long reserved = 0;
        if (TBudget.Limited && !Domain.BudgetReservesResize(_small, ptr, newSize, out reserved))
        {
            return Domain.RefusedResize();
        }

        ref HeapSlot slot = ref context->Heaps[Index];
        ref DomainCounters counters = ref context->Accounts[Index];
        Heap* heap = slot.HeapOwner == _id && slot.Heap != null ? slot.Heap : _small.BindHeap(ref slot, create: true);
        void* moved = _small.ReallocFrom(heap, ptr, newSize, out nuint before, out nuint after);
        if (moved == null)
        {
            Accounting.Unreserve(Index, reserved);
            return Domain.Rejected();
        }

        Accounting.OnReallocated(context, Index, before, after, reserved);
        return moved;
    }
}
