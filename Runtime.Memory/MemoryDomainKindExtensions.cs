namespace Runtime.Memory;

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
