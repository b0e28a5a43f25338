namespace Runtime.Memory.Tests.Infrastructure;

/// <summary>Theory data: every domain kind, so each guarantee is tested on raw, mem and obj.</summary>
public sealed class AllDomains : TheoryData<MemoryDomainKind>
{
    public AllDomains()
    {
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            Add(kind);
        }
    }
}

/// <summary>Theory data: every built-in allocator configuration (the debug ones included) × every domain kind.</summary>
public sealed class AllAllocatorsAndDomains : TheoryData<string, MemoryDomainKind>
{
    /// <summary>Every backend (system, small-object, mimalloc), without and with the debug hooks.</summary>
    public static readonly string[] Allocators =
    [
        AllocatorNames.Malloc, AllocatorNames.Pymalloc, AllocatorNames.Mimalloc,
        AllocatorNames.MallocDebug, AllocatorNames.PymallocDebug, AllocatorNames.MimallocDebug,
    ];

    public AllAllocatorsAndDomains()
    {
        foreach (string allocator in Allocators)
        {
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                Add(allocator, kind);
            }
        }
    }
}

/// <summary>Theory data: every backend with and without the debug hooks × every domain × tracing off and on.</summary>
public sealed class AllAllocatorsDomainsAndTracing : TheoryData<string, MemoryDomainKind, bool>
{
    public AllAllocatorsDomainsAndTracing()
    {
        foreach (string allocator in AllAllocatorsAndDomains.Allocators)
        {
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                Add(allocator, kind, false);
                Add(allocator, kind, true);
            }
        }
    }
}

/// <summary>Runtimes on a chosen allocator, and what their domains account for a request.</summary>
internal static class TestRuntimes
{
    public static RuntimeMemory Create(string allocator = AllocatorNames.Malloc) =>
        RuntimeMemory.Create(new Runtime.Memory.Hosting.RuntimeMemoryOptions { Allocator = allocator });

    /// <summary>
    /// Bytes a domain accounts for a request: the class size on the small-object allocator, else (the system
    /// allocator, or the debug hooks over either) the request.
    /// </summary>
    public static long Accounted(MemoryDomain domain, nuint size) =>
        domain.BaseAllocator is SmallObjectAllocator && domain.DebugHook is null ? (long)SmallObjectAllocator.AccountedSize(size) : (long)size;
}

/// <summary>Small helpers for pointer tests.</summary>
internal static unsafe class Blocks
{
    public static bool IsAligned(void* p) => ((nuint)p & (MemoryDomain.Alignment - 1)) == 0;

    public static void Fill(void* p, nuint size, byte seed)
    {
        var span = new Span<byte>(p, checked((int)size));
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = (byte)(seed + i);
        }
    }

    public static bool Holds(void* p, nuint size, byte seed)
    {
        var span = new ReadOnlySpan<byte>(p, checked((int)size));
        for (int i = 0; i < span.Length; i++)
        {
            if (span[i] != (byte)(seed + i))
            {
                return false;
            }
        }

        return true;
    }

    public static bool IsZero(void* p, nuint size) => !new ReadOnlySpan<byte>(p, checked((int)size)).ContainsAnyExcept((byte)0);
}
