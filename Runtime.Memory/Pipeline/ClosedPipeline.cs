using Runtime.Memory.Threading;

namespace Runtime.Memory.Pipeline;

/// <summary>
/// The pipeline of a domain whose runtime has been disposed: allocations return null and frees do nothing, whatever the
/// chain was; nothing is counted, and the first call is logged (event 4502). It touches no allocator and no counter, so
/// it is safe after the runtime has released everything.
/// </summary>
internal sealed unsafe class ClosedPipeline(PipelineSite site) : DomainPipeline(site)
{
    public override void* Malloc(ThreadContext* context, nuint size) => Domain.UsedAfterDispose(MemoryOperation.Malloc, null);

    public override void* Calloc(ThreadContext* context, nuint count, nuint size) => Domain.UsedAfterDispose(MemoryOperation.Calloc, null);

    public override void* Realloc(ThreadContext* context, void* ptr, nuint newSize) => Domain.UsedAfterDispose(MemoryOperation.Realloc, ptr);

    public override void Free(ThreadContext* context, void* ptr) => Domain.UsedAfterDispose(MemoryOperation.Free, ptr);
}
