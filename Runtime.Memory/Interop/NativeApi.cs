using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>
/// Builds and serves the <see cref="RtMemApi"/> table of one runtime. Every function is an
/// <c>[UnmanagedCallersOnly]</c> entry point that catches everything: native code gets a null return or a status code,
/// never an exception.
/// </summary>
internal static unsafe class NativeApi
{
    /// <summary>The ABI version of the table and structs (<c>RTMEM_ABI_VERSION</c>).</summary>
    public const uint AbiVersion = 1;

    /// <summary>A table for <paramref name="runtime"/> in native memory, and the handle behind its <c>runtime</c> field; free both with <see cref="Release"/>.</summary>
    public static RtMemApi* Create(RuntimeMemory runtime)
    {
        var table = (RtMemApi*)NativeMemory.AllocZeroed((nuint)sizeof(RtMemApi));
        table->AbiVersion = AbiVersion;
        table->Size = (uint)sizeof(RtMemApi);
        table->Runtime = (void*)GCHandle.ToIntPtr(GCHandle.Alloc(runtime));
        table->Malloc = &Malloc;
        table->Calloc = &Calloc;
        table->Realloc = &Realloc;
        table->Free = &Free;
        table->GetAllocator = &GetAllocator;
        table->SetAllocator = &SetAllocator;
        table->InstallHook = &InstallHook;
        table->RemoveHook = &RemoveHook;
        table->GetArenaAllocator = &GetArenaAllocator;
        table->SetArenaAllocator = &SetArenaAllocator;
        table->LiveBlocks = &LiveBlocks;
        table->LiveBytes = &LiveBytes;
        table->TraceTrack = &TraceTrack;
        table->TraceUntrack = &TraceUntrack;
        return table;
    }

    /// <summary>Frees a table made by <see cref="Create"/>; native code must not use it afterwards.</summary>
    public static void Release(RtMemApi* table)
    {
        if (table == null)
        {
            return;
        }

        GCHandle.FromIntPtr((nint)table->Runtime).Free();
        NativeMemory.Free(table);
    }

    /// <summary>The domain a native call names, or null for a bad runtime pointer or domain number.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static MemoryDomain? DomainOf(void* runtime, int domain) =>
        runtime != null && (uint)domain < MemoryDomainKindExtensions.Count
            ? Unsafe.As<RuntimeMemory>(GCHandle.FromIntPtr((nint)runtime).Target!)[(MemoryDomainKind)domain]
            : null;

    /// <summary>The runtime a native call names, or null for a null pointer.</summary>
    private static RuntimeMemory? RuntimeOf(void* runtime) =>
        runtime == null ? null : Unsafe.As<RuntimeMemory>(GCHandle.FromIntPtr((nint)runtime).Target!);

    // ---- memory -----------------------------------------------------------------------------------------------

    [UnmanagedCallersOnly]
    private static void* Malloc(void* runtime, int domain, nuint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryDomain? d = DomainOf(runtime, domain);
            return d is null ? null : d.Malloc(size);
        }
        catch (Exception ex)
        {
            return NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void* Calloc(void* runtime, int domain, nuint count, nuint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryDomain? d = DomainOf(runtime, domain);
            return d is null ? null : d.Calloc(count, size);
        }
        catch (Exception ex)
        {
            return NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void* Realloc(void* runtime, int domain, void* ptr, nuint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryDomain? d = DomainOf(runtime, domain);
            return d is null ? null : d.Realloc(ptr, size);
        }
        catch (Exception ex)
        {
            return NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void Free(void* runtime, int domain, void* ptr)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            DomainOf(runtime, domain)?.Free(ptr);
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
        }
    }

    // ---- allocators -------------------------------------------------------------------------------------------

    [UnmanagedCallersOnly]
    private static int GetAllocator(void* runtime, int domain, RtMemAllocator* result)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryDomain? d = DomainOf(runtime, domain);
            if (d is null || result == null)
            {
                return RtMemStatus.InvalidArgument;
            }

            *result = AllocatorExports.Export(d.Allocator);
            return RtMemStatus.Ok;
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Fault;
        }
    }

    [UnmanagedCallersOnly]
    private static int SetAllocator(void* runtime, int domain, RtMemAllocator* allocator)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryDomain? d = DomainOf(runtime, domain);
            if (d is null || allocator == null || !allocator->IsComplete)
            {
                return RtMemStatus.InvalidArgument;
            }

            // What get_allocator returned (a managed allocator, or a C struct already in the chain) is restored
            // exactly; any other C struct becomes the base allocator.
            MemoryAllocator target = AllocatorExports.Resolve(*allocator)
                ?? FindNative(d, *allocator)
                ?? new NativeAllocator(*allocator);
            d.SetAllocator(target);
            return RtMemStatus.Ok;
        }
        catch (InvalidOperationException ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Busy;
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Fault;
        }
    }

    [UnmanagedCallersOnly]
    private static int InstallHook(void* runtime, int domain, RtMemAllocator* hook, RtMemAllocator* previous)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryDomain? d = DomainOf(runtime, domain);
            if (d is null || hook == null || previous == null || !hook->IsComplete)
            {
                return RtMemStatus.InvalidArgument;
            }

            // The hook learns what it wraps before any call can reach it.
            var native = new NativeHook(*hook);
            d.InstallHookWith(native, below => *previous = AllocatorExports.Export(below));
            return RtMemStatus.Ok;
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Fault;
        }
    }

    [UnmanagedCallersOnly]
    private static int RemoveHook(void* runtime, int domain, RtMemAllocator* hook)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryDomain? d = DomainOf(runtime, domain);
            if (d is null || hook == null)
            {
                return RtMemStatus.InvalidArgument;
            }

            return FindNative(d, *hook) is NativeHook installed && d.RemoveHook(installed) ? RtMemStatus.Ok : RtMemStatus.NotSupported;
        }
        catch (InvalidOperationException ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Busy;
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Fault;
        }
    }

    [UnmanagedCallersOnly]
    private static int GetArenaAllocator(void* runtime, int domain, RtMemArenaAllocator* result)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryDomain? d = DomainOf(runtime, domain);
            if (d is null || result == null)
            {
                return RtMemStatus.InvalidArgument;
            }

            if (d.BaseAllocator is not SmallObjectAllocator small)
            {
                return RtMemStatus.NotSupported;
            }

            *result = AllocatorExports.Export(small.ArenaAllocator);
            return RtMemStatus.Ok;
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Fault;
        }
    }

    [UnmanagedCallersOnly]
    private static int SetArenaAllocator(void* runtime, int domain, RtMemArenaAllocator* arenas)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryDomain? d = DomainOf(runtime, domain);
            if (d is null || arenas == null || !arenas->IsComplete)
            {
                return RtMemStatus.InvalidArgument;
            }

            if (d.BaseAllocator is not SmallObjectAllocator small)
            {
                return RtMemStatus.NotSupported;
            }

            ArenaAllocator target = AllocatorExports.Resolve(*arenas)
                ?? (small.ArenaAllocator is NativeArenaAllocator current && current.Native == *arenas ? current : new NativeArenaAllocator(*arenas));
            small.ArenaAllocator = target;
            return RtMemStatus.Ok;
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Fault;
        }
    }

    [UnmanagedCallersOnly]
    private static long LiveBlocks(void* runtime, int domain)
    {
        try
        {
            return DomainOf(runtime, domain)?.LiveBlocks ?? -1;
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return -1;
        }
    }

    [UnmanagedCallersOnly]
    private static long LiveBytes(void* runtime, int domain)
    {
        try
        {
            return DomainOf(runtime, domain)?.LiveBytes ?? -1;
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return -1;
        }
    }

    [UnmanagedCallersOnly]
    private static int TraceTrack(void* runtime, uint traceDomain, nuint ptr, nuint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            return RuntimeOf(runtime) is not { } rt ? RtMemStatus.InvalidArgument : TraceStatus(rt.Tracer.Track(traceDomain, ptr, size));
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Fault;
        }
    }

    [UnmanagedCallersOnly]
    private static int TraceUntrack(void* runtime, uint traceDomain, nuint ptr)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            return RuntimeOf(runtime) is not { } rt ? RtMemStatus.InvalidArgument : TraceStatus(rt.Tracer.Untrack(traceDomain, ptr));
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
            return RtMemStatus.Fault;
        }
    }

    /// <summary>The tracer's PyTraceMalloc-style result (0, −1, −2) as the table's status codes.</summary>
    private static int TraceStatus(int result) => result switch
    {
        0 => RtMemStatus.Ok,
        -2 => RtMemStatus.NotTracing,
        _ => RtMemStatus.NoMemory,
    };

    /// <summary>The allocator in <paramref name="domain"/>'s chain that is exactly the C struct <paramref name="native"/>.</summary>
    private static MemoryAllocator? FindNative(MemoryDomain domain, RtMemAllocator native) =>
        domain.GetChain().FirstOrDefault(a => a is INativeAllocatorView view && view.Native == native);
}
