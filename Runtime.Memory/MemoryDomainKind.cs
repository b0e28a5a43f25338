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
