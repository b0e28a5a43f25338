namespace Runtime.Memory.Hosting;

/// <summary>
/// Settings of the debug hooks, bound from <c>RuntimeMemory:Debug</c>. They apply whenever the hooks are installed:
/// by a <c>*_debug</c> allocator name (or <c>debug</c>), or later by <see cref="IRuntimeMemory.SetupDebugHooks"/>.
/// </summary>
/// <remarks>
/// <code>
/// { "RuntimeMemory": { "Allocator": "pymalloc_debug", "Debug": { "OnViolation": "Log", "GuardPages": false, "QuarantineBytes": 1048576 } } }
/// </code>
/// </remarks>
public sealed class RuntimeMemoryDebugOptions
{
    /// <summary>What to do when a misuse is found: <c>FailFast</c> (default), <c>Throw</c> or <c>Log</c>.</summary>
    public ViolationAction OnViolation { get; set; } = ViolationAction.FailFast;

    /// <summary>
    /// Give every block its own pages followed by an inaccessible page, so that an overrun faults at the offending
    /// instruction, and keep freed blocks inaccessible for a while (Electric Fence / PageHeap style). Costs at least
    /// two pages of address space and one resident page per block; see the README.
    /// </summary>
    public bool GuardPages { get; set; }

    /// <summary>The default <see cref="QuarantineBytes"/>: 1 MiB per domain.</summary>
    public const long DefaultQuarantineBytes = 1 << 20;

    /// <summary>
    /// Bytes of freed blocks (data and guard bytes) each domain's debug hook holds back from the allocator below,
    /// filled with 0xDD, oldest out first; a block's fill is checked when it leaves and when the quarantine is flushed,
    /// so a write after free is reported (<see cref="MemoryViolationKind.WriteAfterFree"/>) without guard pages. 0 turns
    /// it off. Default 1 MiB: about 21,000 freed 16-byte blocks, or 250 of 4 KiB, per domain; at most 3 MiB for the
    /// three domains. Ignored with <see cref="GuardPages"/>, whose freed blocks are kept inaccessible instead.
    /// </summary>
    public long QuarantineBytes { get; set; } = DefaultQuarantineBytes;
}
