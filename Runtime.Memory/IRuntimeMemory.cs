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

    /// <summary>All three domains' accounting, read together.</summary>
    RuntimeMemoryStatistics GetStatistics();
}
