using System.Runtime.CompilerServices;
using Runtime.Memory.Threading;

namespace Runtime.Memory.Pipeline;

/// <summary>
/// Any chain no built-in pipeline covers (user allocators and hooks, the debug hooks, mimalloc): the allocator contract
/// (<see cref="MemoryAllocator.MallocCounted"/> and the other <c>*Counted</c> calls) behind the domain's exception
/// barrier. An exception from the runtime's own code is corruption, one from a user's is a null return
/// (<see cref="MemoryDomain.Faulted"/>); a <see cref="MemoryViolationException"/> the debug hooks raise on purpose
/// passes to the caller, uncounted from the calls in flight first.
/// </summary>
internal sealed unsafe class ContractPipeline<TBudget>(MemoryAllocator top, PipelineSite site) : DomainPipeline(site)
    where TBudget : struct, IBudgetMode
{
    private readonly MemoryAllocator _top = top;

    /// <inheritdoc/>
    /// <remarks>The top itself: a hook has no native functions, so a chain with hooks never qualifies.</remarks>
    public override MemoryAllocator? NativeHeapAllocator => _top;

    [MethodImpl(MethodImplOptions.NoInlining)]
    public override void* Malloc(ThreadContext* context, nuint size)
    {
        try
        {
            void* p = _top.MallocCounted(size, out nuint blockSize);
            if (p == null)
            {
                return Domain.Rejected();
            }

            return Accounting.OnAllocated(ref context->Accounts[Index], Index, blockSize) ? p : Domain.RefusedByLimit(_top, p);
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            return Domain.Faulted(_top, ex, MemoryOperation.Malloc);
        }
        catch
        {
            MemoryDomain.Leave(context);
            throw;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public override void* Calloc(ThreadContext* context, nuint count, nuint size)
    {
        try
        {
            void* p = _top.CallocCounted(count, size, out nuint blockSize);
            if (p == null)
            {
                return Domain.Rejected();
            }

            return Accounting.OnAllocated(ref context->Accounts[Index], Index, blockSize) ? p : Domain.RefusedByLimit(_top, p);
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            return Domain.Faulted(_top, ex, MemoryOperation.Calloc);
        }
        catch
        {
            MemoryDomain.Leave(context);
            throw;
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    public override void* Realloc(ThreadContext* context, void* ptr, nuint newSize)
    {
        long reserved = 0;
        try
        {
            if (TBudget.Limited && !Domain.BudgetReservesResize(_top, ptr, newSize, out reserved))
            {
                return Domain.RefusedResize();
            }

            void* p = _top.ReallocCounted(ptr, newSize, out nuint oldSize, out nuint blockSize);
            if (p == null)
            {
                Accounting.Unreserve(Index, reserved);
                return Domain.Rejected();
            }

            Accounting.OnReallocated(context, Index, oldSize, blockSize, reserved);
            return p;
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            Accounting.Unreserve(Index, reserved);
            return Domain.Faulted(_top, ex, MemoryOperation.Realloc);
        }
        catch
        {
            Accounting.Unreserve(Index, reserved);
            MemoryDomain.Leave(context);
            throw;
        }
    }

    /// <summary>A free the chain refused (the debug hooks found a misuse and kept the block, whatever hooks sit above
    /// them) is counted nowhere.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    public override void Free(ThreadContext* context, void* ptr)
    {
        try
        {
            if (_top.FreeCounted(ptr, out nuint size))
            {
                Accounting.OnFreed(ref context->Accounts[Index], Index, size);
            }
        }
        catch (Exception ex) when (ex is not MemoryViolationException)
        {
            Domain.Faulted(_top, ex, MemoryOperation.Free);
        }
        catch
        {
            MemoryDomain.Leave(context);
            throw;
        }
    }
}
