using System.Runtime.InteropServices;

namespace Runtime.Memory.Platform;

/// <summary>
/// Whole OS pages: <c>mmap</c>/<c>munmap</c> on Unix, <c>VirtualAlloc</c>/<c>VirtualFree</c> on Windows.
/// Memory mapped here is zeroed, page-aligned, and goes back to the OS (resident memory drops) when unmapped.
/// </summary>
internal static unsafe partial class OsPages
{
    // Linux and macOS values (identical for these flags on both).
    private const int ProtRead = 0x1;
    private const int ProtWrite = 0x2;
    private const int MapPrivate = 0x02;
    private static readonly int MapAnonymous = OperatingSystem.IsMacOS() ? 0x1000 : 0x20;

    private const uint MemCommit = 0x1000;
    private const uint MemReserve = 0x2000;
    private const uint MemRelease = 0x8000;
    private const uint PageReadWrite = 0x04;

    static OsPages() => NativeLibraries.EnsureResolver();

    /// <summary>Maps <paramref name="size"/> bytes of fresh zeroed pages; null when the OS refuses.</summary>
    public static void* Map(nuint size)
    {
        if (OperatingSystem.IsWindows())
        {
            return VirtualAlloc(null, size, MemCommit | MemReserve, PageReadWrite);
        }

        void* p = mmap(null, size, ProtRead | ProtWrite, MapPrivate | MapAnonymous, -1, 0);
        return p == (void*)-1 ? null : p; // MAP_FAILED
    }

    /// <summary>
    /// Maps <paramref name="size"/> bytes aligned to <paramref name="alignment"/> (a power of two, a multiple of the
    /// page size) by over-mapping and giving the excess back. Null when the OS refuses.
    /// </summary>
    public static void* MapAligned(nuint size, nuint alignment)
    {
        if (OperatingSystem.IsWindows())
        {
            // VirtualAlloc cannot trim; reserve a larger range, release it, and map at the aligned address inside.
            for (int attempt = 0; attempt < 8; attempt++)
            {
                byte* probe = (byte*)VirtualAlloc(null, size + alignment, MemReserve, PageReadWrite);
                if (probe == null)
                {
                    return null;
                }

                VirtualFree(probe, 0, MemRelease);
                byte* aligned = (byte*)(((nuint)probe + alignment - 1) & ~(alignment - 1));
                void* p = VirtualAlloc(aligned, size, MemCommit | MemReserve, PageReadWrite);
                if (p != null)
                {
                    return p;
                }
            }

            return null;
        }

        byte* raw = (byte*)Map(size + alignment);
        if (raw == null)
        {
            return null;
        }

        byte* start = (byte*)(((nuint)raw + alignment - 1) & ~(alignment - 1));
        nuint head = (nuint)(start - raw);
        nuint tail = alignment - head;
        if (head != 0)
        {
            munmap(raw, head);
        }

        if (tail != 0)
        {
            munmap(start + size, tail);
        }

        return start;
    }

    /// <summary>Unmaps pages returned by <see cref="Map"/> or <see cref="MapAligned"/>. Null does nothing.</summary>
    public static void Unmap(void* p, nuint size)
    {
        if (p == null)
        {
            return; // unlike free(), munmap does not special-case NULL
        }

        if (OperatingSystem.IsWindows())
        {
            VirtualFree(p, 0, MemRelease);
        }
        else
        {
            munmap(p, size);
        }
    }

    [LibraryImport(NativeLibraries.LibC, EntryPoint = "mmap")]
    private static partial void* mmap(void* addr, nuint length, int prot, int flags, int fd, nint offset);

    [LibraryImport(NativeLibraries.LibC, EntryPoint = "munmap")]
    private static partial int munmap(void* addr, nuint length);

    [LibraryImport("kernel32", EntryPoint = "VirtualAlloc")]
    private static partial void* VirtualAlloc(void* address, nuint size, uint allocationType, uint protect);

    [LibraryImport("kernel32", EntryPoint = "VirtualFree")]
    [return: MarshalAs(UnmanagedType.Bool)]
    private static partial bool VirtualFree(void* address, nuint size, uint freeType);
}
