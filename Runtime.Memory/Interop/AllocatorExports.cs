using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>
/// Managed allocators seen from C: an <see cref="RtMemAllocator"/> whose functions are the entry points below and whose
/// <c>ctx</c> is a handle to the allocator, and the reverse lookup that recognises such a struct when C hands it back.
/// </summary>
/// <remarks>
/// <para>Every entry point is <c>[UnmanagedCallersOnly]</c>, opens a <see cref="NativeCallScope"/> and catches every
/// exception: C never sees one (a failure is a null return; a free that throws is swallowed).</para>
/// <para>Handles: one strong <see cref="GCHandle"/> per exported allocator, created the first time it is exported and
/// kept for the life of the process, so the same allocator always gives the same struct (what C got once, it can
/// compare and hand back later). The number of handles is the number of distinct allocators ever exported: a few per
/// runtime.</para>
/// </remarks>
internal static unsafe class AllocatorExports
{
    private static readonly Lock s_lock = new();
    private static readonly Dictionary<MemoryAllocator, nint> s_allocators = new(ReferenceEqualityComparer.Instance);
    private static readonly Dictionary<ArenaAllocator, nint> s_arenas = new(ReferenceEqualityComparer.Instance);

    // The entry points' addresses, taken once: the exported structs carry these, and Resolve compares against them.
    private static readonly nint s_malloc = (nint)(delegate* unmanaged<void*, nuint, void*>)&Malloc;
    private static readonly nint s_calloc = (nint)(delegate* unmanaged<void*, nuint, nuint, void*>)&Calloc;
    private static readonly nint s_realloc = (nint)(delegate* unmanaged<void*, void*, nuint, void*>)&Realloc;
    private static readonly nint s_free = (nint)(delegate* unmanaged<void*, void*, void>)&Free;
    private static readonly nint s_arenaAlloc = (nint)(delegate* unmanaged<void*, nuint, void*>)&ArenaAlloc;
    private static readonly nint s_arenaFree = (nint)(delegate* unmanaged<void*, void*, nuint, void>)&ArenaFree;

    /// <summary>The C view of <paramref name="allocator"/>: a native allocator as it was given, a managed one through the entry points.</summary>
    public static RtMemAllocator Export(MemoryAllocator allocator)
    {
        if (allocator is INativeAllocatorView native)
        {
            return native.Native;
        }

        return new RtMemAllocator
        {
            Ctx = (void*)HandleOf(s_allocators, allocator),
            Malloc = (delegate* unmanaged<void*, nuint, void*>)s_malloc,
            Calloc = (delegate* unmanaged<void*, nuint, nuint, void*>)s_calloc,
            Realloc = (delegate* unmanaged<void*, void*, nuint, void*>)s_realloc,
            Free = (delegate* unmanaged<void*, void*, void>)s_free,
        };
    }

    /// <summary>The managed allocator a struct from <see cref="Export(MemoryAllocator)"/> stands for, or null for a struct written in C.</summary>
    public static MemoryAllocator? Resolve(in RtMemAllocator allocator)
    {
        if ((nint)allocator.Malloc != s_malloc || (nint)allocator.Free != s_free)
        {
            return null;
        }

        lock (s_lock)
        {
            foreach ((MemoryAllocator managed, nint handle) in s_allocators)
            {
                if (handle == (nint)allocator.Ctx)
                {
                    return managed;
                }
            }
        }

        return null;
    }

    /// <summary>The C view of an arena allocator.</summary>
    public static RtMemArenaAllocator Export(ArenaAllocator arenas)
    {
        if (arenas is NativeArenaAllocator native)
        {
            return native.Native;
        }

        return new RtMemArenaAllocator
        {
            Ctx = (void*)HandleOf(s_arenas, arenas),
            Alloc = (delegate* unmanaged<void*, nuint, void*>)s_arenaAlloc,
            Free = (delegate* unmanaged<void*, void*, nuint, void>)s_arenaFree,
        };
    }

    /// <summary>The managed arena allocator a struct from <see cref="Export(ArenaAllocator)"/> stands for, or null.</summary>
    public static ArenaAllocator? Resolve(in RtMemArenaAllocator arenas)
    {
        if ((nint)arenas.Alloc != s_arenaAlloc)
        {
            return null;
        }

        lock (s_lock)
        {
            foreach ((ArenaAllocator managed, nint handle) in s_arenas)
            {
                if (handle == (nint)arenas.Ctx)
                {
                    return managed;
                }
            }
        }

        return null;
    }

    private static nint HandleOf<T>(Dictionary<T, nint> handles, T target)
        where T : class
    {
        lock (s_lock)
        {
            if (!handles.TryGetValue(target, out nint handle))
            {
                handle = GCHandle.ToIntPtr(GCHandle.Alloc(target));
                handles.Add(target, handle);
            }

            return handle;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static T Target<T>(void* ctx)
        where T : class => Unsafe.As<T>(GCHandle.FromIntPtr((nint)ctx).Target!);

    // ---- entry points for C (never throw) --------------------------------------------------------------------

    [UnmanagedCallersOnly]
    private static void* Malloc(void* ctx, nuint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            return Target<MemoryAllocator>(ctx).Malloc(size);
        }
        catch (Exception ex)
        {
            return NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void* Calloc(void* ctx, nuint count, nuint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            return Target<MemoryAllocator>(ctx).Calloc(count, size);
        }
        catch (Exception ex)
        {
            return NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void* Realloc(void* ctx, void* ptr, nuint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            MemoryAllocator allocator = Target<MemoryAllocator>(ctx);
            return ptr == null ? allocator.Malloc(size) : allocator.Realloc(ptr, size);
        }
        catch (Exception ex)
        {
            return NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void Free(void* ctx, void* ptr)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            if (ptr != null)
            {
                Target<MemoryAllocator>(ctx).Free(ptr);
            }
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void* ArenaAlloc(void* ctx, nuint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            return Target<ArenaAllocator>(ctx).Alloc(size);
        }
        catch (Exception ex)
        {
            return NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void ArenaFree(void* ctx, void* ptr, nuint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            Target<ArenaAllocator>(ctx).Free(ptr, size);
        }
        catch (Exception ex)
        {
            NativeFaults.Swallow(ex);
        }
    }
}

/// <summary>What happens to an exception that would otherwise cross into native code: it is kept, counted, and dropped.</summary>
internal static unsafe class NativeFaults
{
    private static long s_count;
    private static volatile Exception? s_last;

    /// <summary>Exceptions stopped at the native boundary so far.</summary>
    public static long Count => Interlocked.Read(ref s_count);

    /// <summary>The last of them.</summary>
    public static Exception? Last => s_last;

    /// <summary>Records <paramref name="ex"/> and returns null, the failure value of every allocating entry point.</summary>
    public static void* Swallow(Exception ex)
    {
        Interlocked.Increment(ref s_count);
        s_last = ex;
        return null;
    }
}
