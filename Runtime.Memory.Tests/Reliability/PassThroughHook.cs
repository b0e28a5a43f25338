namespace Runtime.Memory.Tests.Reliability;

/// <summary>A user hook that forwards every call unchanged (as samples/HookChain's does), through the public contract.</summary>
internal sealed unsafe class PassThroughHook : MemoryHook
{
    public override string Name => "pass-through";

    public override void* Malloc(nuint size) => Inner.Malloc(size);

    public override void* Calloc(nuint count, nuint size) => Inner.Calloc(count, size);

    public override void* Realloc(void* ptr, nuint newSize) => Inner.Realloc(ptr, newSize);

    public override void Free(void* ptr) => Inner.Free(ptr);
}
