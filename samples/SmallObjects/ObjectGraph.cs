using Runtime.Memory.Arenas;

namespace Runtime.Memory.Samples;

/// <summary>
/// A toy interpreter object: a 16-byte header pointing at a payload of 8–500 bytes, both in the obj domain, the way
/// an interpreter allocates an object and its slots.
/// </summary>
internal static unsafe class ObjectGraph
{
    public static nint NewObject(MemoryDomain obj, Random rng)
    {
        var header = (nint*)obj.Malloc(16);
        int size = rng.Next(100) < 80 ? rng.Next(8, 65) : rng.Next(65, 501);
        byte* payload = (byte*)obj.Calloc((nuint)size, 1);
        if (header == null || payload == null)
        {
            throw new OutOfMemoryException("the obj domain returned null"); // an interpreter would raise MemoryError
        }

        header[0] = (nint)payload;
        header[1] = size;
        return (nint)header;
    }

    public static void FreeObject(MemoryDomain obj, nint p)
    {
        var header = (nint*)p;
        obj.Free((void*)header[0]);
        obj.Free(header);
    }
}

/// <summary>An arena allocator that counts what it maps and unmaps, forwarding to the one it replaced.</summary>
internal sealed unsafe class CountingArenaAllocator(ArenaAllocator inner) : ArenaAllocator
{
    private int _allocated;
    private int _freed;

    public int Allocated => Volatile.Read(ref _allocated);

    public int Freed => Volatile.Read(ref _freed);

    public override string Name => $"counting > {inner.Name}";

    public override void* Alloc(nuint size)
    {
        Interlocked.Increment(ref _allocated);
        return inner.Alloc(size);
    }

    public override void Free(void* ptr, nuint size)
    {
        Interlocked.Increment(ref _freed);
        inner.Free(ptr, size);
    }
}
