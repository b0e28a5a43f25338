using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>
/// The function table a runtime hands to native code: <c>rtmem_api</c> in <c>runtime_mem.h</c>. Field order and
/// meaning are the ABI; new fields are only ever appended (<see cref="Size"/> says how many a table has).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
public unsafe struct RtMemApi
{
    /// <summary><c>RTMEM_ABI_VERSION</c> of the runtime that filled the table.</summary>
    public uint AbiVersion;

    /// <summary><c>sizeof(rtmem_api)</c> as the runtime knows it.</summary>
    public uint Size;

    /// <summary>The runtime: pass it as the first argument of every function.</summary>
    public void* Runtime;

    /// <summary><c>void *malloc(void *runtime, int domain, size_t size)</c>.</summary>
    public delegate* unmanaged<void*, int, nuint, void*> Malloc;

    /// <summary><c>void *calloc(void *runtime, int domain, size_t nelem, size_t elsize)</c>.</summary>
    public delegate* unmanaged<void*, int, nuint, nuint, void*> Calloc;

    /// <summary><c>void *realloc(void *runtime, int domain, void *ptr, size_t new_size)</c>.</summary>
    public delegate* unmanaged<void*, int, void*, nuint, void*> Realloc;

    /// <summary><c>void free(void *runtime, int domain, void *ptr)</c>.</summary>
    public delegate* unmanaged<void*, int, void*, void> Free;

    /// <summary><c>int get_allocator(void *runtime, int domain, rtmem_allocator *out)</c>.</summary>
    public delegate* unmanaged<void*, int, RtMemAllocator*, int> GetAllocator;

    /// <summary><c>int set_allocator(void *runtime, int domain, const rtmem_allocator *allocator)</c>.</summary>
    public delegate* unmanaged<void*, int, RtMemAllocator*, int> SetAllocator;

    /// <summary><c>int install_hook(void *runtime, int domain, const rtmem_allocator *hook, rtmem_allocator *previous)</c>.</summary>
    public delegate* unmanaged<void*, int, RtMemAllocator*, RtMemAllocator*, int> InstallHook;

    /// <summary><c>int remove_hook(void *runtime, int domain, const rtmem_allocator *hook)</c>.</summary>
    public delegate* unmanaged<void*, int, RtMemAllocator*, int> RemoveHook;

    /// <summary><c>int get_arena_allocator(void *runtime, int domain, rtmem_arena_allocator *out)</c>.</summary>
    public delegate* unmanaged<void*, int, RtMemArenaAllocator*, int> GetArenaAllocator;

    /// <summary><c>int set_arena_allocator(void *runtime, int domain, const rtmem_arena_allocator *arenas)</c>.</summary>
    public delegate* unmanaged<void*, int, RtMemArenaAllocator*, int> SetArenaAllocator;

    /// <summary><c>int64_t live_blocks(void *runtime, int domain)</c>; -1 for a bad domain.</summary>
    public delegate* unmanaged<void*, int, long> LiveBlocks;

    /// <summary><c>int64_t live_bytes(void *runtime, int domain)</c>; -1 for a bad domain.</summary>
    public delegate* unmanaged<void*, int, long> LiveBytes;

    /// <summary><c>int trace_track(void *runtime, unsigned int trace_domain, uintptr_t ptr, size_t size)</c> (PyTraceMalloc_Track).</summary>
    public delegate* unmanaged<void*, uint, nuint, nuint, int> TraceTrack;

    /// <summary><c>int trace_untrack(void *runtime, unsigned int trace_domain, uintptr_t ptr)</c> (PyTraceMalloc_Untrack).</summary>
    public delegate* unmanaged<void*, uint, nuint, int> TraceUntrack;
}
