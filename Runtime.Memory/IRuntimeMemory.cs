namespace Runtime.Memory;

/// <summary>
/// The memory service of one runtime: its three domains and their accounting.
/// Two instances share no state.
/// </summary>
public interface IRuntimeMemory
{
    /// <summary>The configured allocator name (<see cref="AllocatorNames"/>) or the provider's name.</summary>
    string AllocatorName { get; }

    /// <summary>The <c>raw</c> domain.</summary>
    MemoryDomain Raw { get; }

    /// <summary>The <c>mem</c> domain.</summary>
    MemoryDomain Mem { get; }

    /// <summary>The <c>obj</c> domain.</summary>
    MemoryDomain Obj { get; }

    /// <summary>The domain of <paramref name="kind"/>.</summary>
    MemoryDomain this[MemoryDomainKind kind] { get; }

    /// <summary>The debug state shared by the domains' debug hooks: violations found, live debug blocks, settings.</summary>
    MemoryDebugger Debugger { get; }

    /// <summary>
    /// Installs the debug hooks on all three domains (PyMem_SetupDebugHooks), on top of whatever allocator each has.
    /// Calling it again, or after a <c>*_debug</c> allocator name installed them, does nothing, even when other hooks
    /// sit above them. See <see cref="MemoryDomain.SetupDebugHooks"/>.
    /// </summary>
    void SetupDebugHooks();

    /// <summary>All three domains' accounting, read together.</summary>
    RuntimeMemoryStatistics GetStatistics();
}
