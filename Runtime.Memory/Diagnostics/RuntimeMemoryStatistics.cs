namespace Runtime.Memory;

/// <summary>The accounting of all three domains of one runtime, read together.</summary>
/// <param name="AllocatorName">The configured allocator name (<c>default</c>, <c>malloc</c>, ...).</param>
/// <param name="Domains">One entry per domain, in <see cref="MemoryDomainKind"/> order.</param>
public sealed record RuntimeMemoryStatistics(string AllocatorName, IReadOnlyList<DomainStatistics> Domains)
{
    /// <summary>The statistics of one domain.</summary>
    public DomainStatistics this[MemoryDomainKind kind] => Domains[(int)kind];

    /// <summary>Live blocks over all domains.</summary>
    public long LiveBlocks => Domains.Sum(d => d.LiveBlocks);

    /// <summary>Live bytes over all domains.</summary>
    public long LiveBytes => Domains.Sum(d => d.LiveBytes);
}
