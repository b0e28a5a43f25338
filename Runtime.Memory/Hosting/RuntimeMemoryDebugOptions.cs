namespace Runtime.Memory.Hosting;

/// <summary>
/// Settings of the debug hooks, bound from <c>RuntimeMemory:Debug</c>. They apply whenever the hooks are installed:
/// by a <c>*_debug</c> allocator name (or <c>debug</c>), or later by <see cref="IRuntimeMemory.SetupDebugHooks"/>.
/// </summary>
/// <remarks>
/// <code>
/// { "RuntimeMemory": { "Allocator": "pymalloc_debug", "Debug": { "OnViolation": "Log", "GuardPages": false } } }
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
}
