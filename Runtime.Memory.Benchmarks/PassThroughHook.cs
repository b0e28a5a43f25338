namespace Runtime.Memory.Benchmarks;

/// <summary>A hook that only forwards: measures the cost of one level of the chain (virtual dispatch).</summary>
public sealed class PassThroughHook : MemoryHook
{
    public override string Name => "pass-through";
}
