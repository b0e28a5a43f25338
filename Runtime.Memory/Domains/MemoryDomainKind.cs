namespace Runtime.Memory;

/// <summary>
/// The three allocator domains of PEP 445, in <c>PyMemAllocatorDomain</c> order.
/// The numeric values are part of the native ABI and never change.
/// </summary>
public enum MemoryDomainKind
{
    /// <summary><c>PYMEM_DOMAIN_RAW</c>: memory for buffers and native libraries; callable from any thread.</summary>
    Raw = 0,

    /// <summary><c>PYMEM_DOMAIN_MEM</c>: general-purpose interpreter memory.</summary>
    Mem = 1,

    /// <summary><c>PYMEM_DOMAIN_OBJ</c>: interpreter objects.</summary>
    Obj = 2,
}

/// <summary>Names and ids of <see cref="MemoryDomainKind"/> values.</summary>
public static class MemoryDomainKindExtensions
{
    /// <summary>Number of domains; the kinds are <c>0 .. Count-1</c>.</summary>
    public const int Count = 3;

    /// <summary>The lowercase name used in reports and configuration: <c>raw</c>, <c>mem</c> or <c>obj</c>.</summary>
    public static string ToName(this MemoryDomainKind kind) => kind switch
    {
        MemoryDomainKind.Raw => "raw",
        MemoryDomainKind.Mem => "mem",
        MemoryDomainKind.Obj => "obj",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Domain kinds are Raw, Mem and Obj."),
    };

    /// <summary>
    /// The one-byte API id CPython's debug hooks store in each block: <c>'r'</c>, <c>'m'</c> or <c>'o'</c>.
    /// </summary>
    public static byte ToApiId(this MemoryDomainKind kind) => (byte)kind.ToName()[0];

    /// <summary>All kinds, in ABI order.</summary>
    public static ReadOnlySpan<MemoryDomainKind> All => [MemoryDomainKind.Raw, MemoryDomainKind.Mem, MemoryDomainKind.Obj];
}
