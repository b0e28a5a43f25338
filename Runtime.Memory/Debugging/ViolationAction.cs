namespace Runtime.Memory.Debugging;

/// <summary>What the debug hooks do when they find a misuse (configuration key <c>RuntimeMemory:Debug:OnViolation</c>).</summary>
public enum ViolationAction
{
    /// <summary>
    /// CPython's fatal error: the report goes to stderr and is logged at Critical, then the process stops
    /// (<see cref="Environment.FailFast(string)"/>). The default: corrupted memory is not something to run on with.
    /// </summary>
    FailFast,

    /// <summary>
    /// Throw a <see cref="MemoryViolationException"/> carrying the report, for managed callers (tests, tools). A call
    /// that came from native code never sees it: there the action falls back to <see cref="Log"/>.
    /// </summary>
    Throw,

    /// <summary>
    /// Log the report at Error and carry on. The suspect block is leaked, never freed: corrupted memory is not handed
    /// back to an allocator. A free returns normally; a realloc returns null (the caller sees an allocation failure).
    /// </summary>
    Log,
}
