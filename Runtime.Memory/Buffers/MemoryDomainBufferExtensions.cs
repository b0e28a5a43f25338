namespace Runtime.Memory.Buffers;

/// <summary>Safe views of a domain: a <see cref="System.Buffers.MemoryPool{T}"/> and <see cref="System.Runtime.InteropServices.SafeHandle"/>
/// blocks, for code that should not hold raw pointers.</summary>
public static class MemoryDomainBufferExtensions
{
    /// <summary>
    /// The domain's shared <see cref="RuntimeMemoryPool"/>: made on first call, the same object on every later one (also
    /// across threads); its Dispose does nothing. Hand it to <c>new PipeOptions(pool: domain.AsMemoryPool())</c> or any
    /// API that takes a <see cref="System.Buffers.MemoryPool{T}"/>.
    /// </summary>
    public static RuntimeMemoryPool AsMemoryPool(this MemoryDomain domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        return Volatile.Read(ref domain.SharedMemoryPool) ?? CreateSharedPool(domain);
    }

    /// <summary>Allocates <paramref name="size"/> bytes of the domain owned by a <see cref="RuntimeMemoryHandle"/>
    /// (see <see cref="RuntimeMemoryHandle.Allocate"/> for the exceptions).</summary>
    public static RuntimeMemoryHandle AllocateHandle(this MemoryDomain domain, nuint size) => RuntimeMemoryHandle.Allocate(domain, size);

    /// <summary>The first call's slow path: two racing first calls both build a pool, and both return the one published.</summary>
    private static RuntimeMemoryPool CreateSharedPool(MemoryDomain domain)
    {
        var pool = new RuntimeMemoryPool(domain, shared: true);
        return Interlocked.CompareExchange(ref domain.SharedMemoryPool, pool, null) ?? pool;
    }
}
