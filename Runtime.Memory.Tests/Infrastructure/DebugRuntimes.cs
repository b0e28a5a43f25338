using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Runtime.Memory.Hosting;

namespace Runtime.Memory.Tests.Infrastructure;

/// <summary>Runtimes with the debug hooks on, and helpers to provoke and read their reports.</summary>
internal static partial class DebugRuntimes
{
    /// <summary>A runtime on <paramref name="allocator"/> (a plain name) with the debug hooks installed at creation.</summary>
    public static RuntimeMemory Create(string allocator = AllocatorNames.Malloc, ViolationAction onViolation = ViolationAction.Throw, bool guardPages = false,
        long quarantineBytes = RuntimeMemoryDebugOptions.DefaultQuarantineBytes) =>
        RuntimeMemory.Create(new RuntimeMemoryOptions
        {
            Allocator = allocator + "_debug",
            Debug = new RuntimeMemoryDebugOptions { OnViolation = onViolation, GuardPages = guardPages, QuarantineBytes = quarantineBytes },
        });

    /// <summary>Runs <paramref name="misuse"/>, which must make the debug hooks throw, and returns the violation.</summary>
    public static MemoryViolation Catch(Action misuse) => Assert.Throws<MemoryViolationException>(misuse).Violation;

    /// <summary>A report with its addresses replaced by <c>0x&lt;address&gt;</c>, for snapshots.</summary>
    public static string Scrub(string report) => AddressPattern().Replace(report, "0x<address>");

    [GeneratedRegex("0x[0-9a-f]{16}|0x[0-9a-f]{8}(?![0-9a-f])")]
    private static partial Regex AddressPattern();

    /// <summary>The base allocators every debug test runs on.</summary>
    public static readonly string[] BaseAllocators = [AllocatorNames.Malloc, AllocatorNames.Pymalloc];
}

/// <summary>Theory data: every base allocator the debug hooks are tested on.</summary>
public sealed class DebugBaseAllocators : TheoryData<string>
{
    public DebugBaseAllocators()
    {
        foreach (string allocator in DebugRuntimes.BaseAllocators)
        {
            Add(allocator);
        }
    }
}

/// <summary>Theory data: every base allocator × every domain.</summary>
public sealed class DebugBaseAllocatorsAndDomains : TheoryData<string, MemoryDomainKind>
{
    public DebugBaseAllocatorsAndDomains()
    {
        foreach (string allocator in DebugRuntimes.BaseAllocators)
        {
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                Add(allocator, kind);
            }
        }
    }
}

/// <summary>
/// A base allocator that never gives memory back until disposed, so that tests can look at what the debug hooks left
/// in a block after freeing it (the allocators below would reuse or unmap it).
/// </summary>
internal sealed unsafe class KeepFreedAllocator : MemoryAllocator, IDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<nint, nuint> _live = [];
    private readonly List<nint> _freed = [];

    public override string Name => "keep-freed";

    public override void* Malloc(nuint size)
    {
        void* p = NativeMemory.AlignedAlloc(Math.Max(size, 1), 16);
        lock (_lock)
        {
            _live[(nint)p] = size;
        }

        return p;
    }

    public override void* Calloc(nuint count, nuint size)
    {
        void* p = Malloc(count * size);
        NativeMemory.Clear(p, count * size);
        return p;
    }

    public override void* Realloc(void* ptr, nuint newSize)
    {
        void* p = Malloc(newSize);
        Buffer.MemoryCopy(ptr, p, newSize, Math.Min(newSize, BlockSize(ptr)));
        Free(ptr);
        return p;
    }

    public override void Free(void* ptr)
    {
        lock (_lock)
        {
            Assert.True(_live.Remove((nint)ptr), "freed a block this allocator does not hold");
            _freed.Add((nint)ptr);
        }
    }

    public override nuint BlockSize(void* ptr)
    {
        lock (_lock)
        {
            return _live[(nint)ptr];
        }
    }

    public bool WasFreed(void* ptr)
    {
        lock (_lock)
        {
            return _freed.Contains((nint)ptr);
        }
    }

    /// <summary>Frees everything, once (a runtime disposes its base allocators, and this one may serve three domains).</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            foreach (nint p in _live.Keys.Concat(_freed))
            {
                NativeMemory.AlignedFree((void*)p);
            }

            _live.Clear();
            _freed.Clear();
        }
    }
}

/// <summary>Gives every domain the same kind of base allocator from a factory.</summary>
internal sealed class FactoryProvider(string name, Func<MemoryDomainKind, MemoryAllocator> create) : IAllocatorProvider
{
    public string Name => name;

    public MemoryAllocator CreateBaseAllocator(MemoryDomainKind domain) => create(domain);
}
