namespace Runtime.Memory.Allocators;

/// <summary>
/// The chain of a domain whose runtime has been disposed: every allocation fails with null and every free does
/// nothing. A block freed after <see cref="RuntimeMemory.Dispose"/> is left where it is, never touched (its memory
/// stays with the process): that is what an embedding host that shuts an interpreter down after the runtime gets, on
/// every allocator, and nothing is reported as a misuse. The domain logs the first such call.
/// </summary>
internal sealed unsafe class ClosedAllocator : MemoryAllocator
{
    public static readonly ClosedAllocator Instance = new();

    private ClosedAllocator()
    {
    }

    public override string Name => "closed";

    /// <inheritdoc/>
    internal override Pipeline.DomainPipeline CreatePipeline(in Pipeline.PipelineSite site) => new Pipeline.ClosedPipeline(site);

    public override void* Malloc(nuint size) => null;

    public override void* Calloc(nuint count, nuint size) => null;

    public override void* Realloc(void* ptr, nuint newSize) => null;

    public override void Free(void* ptr)
    {
    }

    public override nuint BlockSize(void* ptr) => 0;

    /// <summary>Does nothing, and says the block was not freed (it is not counted).</summary>
    internal override bool FreeCounted(void* ptr, out nuint blockSize)
    {
        blockSize = 0;
        return false;
    }
}
