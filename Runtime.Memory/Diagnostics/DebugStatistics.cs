namespace Runtime.Memory.Diagnostics;

/// <summary>The debug hooks at one moment (<see cref="MemoryDebugger"/>).</summary>
/// <param name="HookedDomains">Domains with the debug hooks installed.</param>
/// <param name="Violations">Misuses found since the runtime was created.</param>
/// <param name="LiveBlocks">Blocks the hooks are guarding now.</param>
/// <param name="ShadowBytes">Bytes of the hooks' shadow map.</param>
public sealed record DebugStatistics(IReadOnlyList<MemoryDomainKind> HookedDomains, long Violations, long LiveBlocks, long ShadowBytes)
{
    /// <summary>No debug hook installed and nothing found.</summary>
    public static DebugStatistics None { get; } = new([], 0, 0, 0);

    /// <summary>Bytes of freed blocks (data and guard bytes) held in the quarantines: live to the OS, dead to the
    /// program, and in no domain's live bytes or budget.</summary>
    public long QuarantinedBytes { get; init; }

    /// <summary>Freed blocks held in the quarantines (guard-page mode: inaccessible blocks not yet unmapped).</summary>
    public long QuarantinedBlocks { get; init; }
}
