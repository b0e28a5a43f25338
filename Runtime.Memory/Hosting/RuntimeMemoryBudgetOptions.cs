namespace Runtime.Memory.Hosting;

/// <summary>One budget: <c>MaxBytes</c>.</summary>
public sealed class RuntimeMemoryBudgetOptions
{
    /// <summary>The most live bytes, 1 or more; <see langword="null"/> (the key left out) for no budget.</summary>
    public long? MaxBytes { get; set; }
}
