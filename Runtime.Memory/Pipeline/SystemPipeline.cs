using System.Runtime.CompilerServices;
using Runtime.Memory.Threading;

namespace Runtime.Memory.Pipeline;

/// <summary>
/// The system allocator alone on a domain's chain (the default of <c>raw</c>): the C library's call, the size header,
/// and the counters. No exception barrier and no virtual call.
/// </summary>
internal sealed unsafe class SystemPipeline<TBudget>(SystemAllocator system, PipelineSite site) : DomainPipeline(site)
    where TBudget : struct, IBudgetMode
{
    private readonly SystemAllocator _system = system;

    /// <inheritdoc/>
    public override MemoryAllocator? NativeHeapAllocator => _system;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void* Malloc(ThreadContext* context, nuint size)
    {
        void* p = _system.Malloc(size);
        if (p == null)
        {
            return Domain.Rejected();
        }

        return Accounting.OnAllocated(ref context->Accounts[Index], Index, size) ? p : Domain.RefusedByLimit(_system, p);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override void Free(ThreadContext* context, void* ptr)
    {
        nuint size = _system.BlockSize(ptr);
        _system.Free(ptr);
        Accounting.OnFreed(ref context->Accounts[Index], Index, size);
    }

    public override void* Calloc(ThreadContext* context, nuint count, nuint size)
    {
        void* p = _system.Calloc(count, size);
        if (p == null)
        {
            return Domain.Rejected();
        }

        return Accounting.OnAllocated(ref context->Accounts[Index], Index, count * size) ? p : Domain.RefusedByLimit(_system, p);
    }

    public override void* Realloc(ThreadContext* context, void* ptr, nuint newSize)
    {
        long reserved = 0;
        if (TBudget.Limited && !Domain.BudgetReservesResize(_system, ptr, newSize, out reserved))
        {
            return Domain.RefusedResize();
        }

        nuint before = _system.BlockSize(ptr);
        void* p = _system.Realloc(ptr, newSize);
        if (p == null)
        {
            Accounting.Unreserve(Index, reserved);
            return Domain.Rejected();
        }

        Accounting.OnReallocated(context, Index, before, newSize, reserved);
        return p;
    }
}
