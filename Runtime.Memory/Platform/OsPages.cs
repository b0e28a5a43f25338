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
    private const uint MemDecommit = 0x4000;
    private const uint PageReadWrite = 0x04;
    private const int ProtNone = 0x0;
    private const int MadvDontNeed = 4; // Linux and macOS

    /// <summary>The OS page size.</summary>
    public static nuint PageSize { get; } = (nuint)Environment.SystemPageSize;

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
            return VirtualAllocAligned(size, alignment, MemCommit | MemReserve);
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

    /// <summary>
    /// Maps <paramref name="accessible"/> bytes (a multiple of <see cref="PageSize"/>) of zeroed read-write pages
    /// followed by one inaccessible guard page, so that the first access past them faults. Null when the OS refuses.
    /// Give it back with <see cref="UnmapGuarded"/>.
    /// </summary>
    public static void* MapGuarded(nuint accessible)
    {
        if (OperatingSystem.IsWindows())
        {
            void* reserved = VirtualAlloc(null, accessible + PageSize, MemReserve, PageReadWrite);
            if (reserved == null)
            {
                return null;
            }

            if (VirtualAlloc(reserved, accessible, MemCommit, PageReadWrite) == null)
            {
                VirtualFree(reserved, 0, MemRelease);
                return null;
            }

            return reserved; // the guard page stays reserved: any access faults
        }

        byte* p = (byte*)Map(accessible + PageSize);
        if (p == null)
        {
            return null;
        }

        if (mprotect(p + accessible, PageSize, ProtNone) != 0)
        {
            munmap(p, accessible + PageSize);
            return null;
        }

        return p;
    }

    /// <summary>
    /// Gives the pages of a mapping from <see cref="Map"/> back to the OS but keeps them mapped and usable (Linux:
    /// <c>madvise(MADV_DONTNEED)</c>, after which they read as zeros; macOS: the same call, which may leave the old
    /// contents; Windows: the bytes are zeroed in place). Callers must not rely on the contents afterwards.
    /// </summary>
    public static void Discard(void* p, nuint size)
    {
        if (OperatingSystem.IsWindows())
        {
            NativeMemory.Clear(p, size);
            return;
        }

        madvise(p, size, MadvDontNeed);
    }

    /// <summary>
    /// Makes the accessible pages of a guarded mapping inaccessible too and gives their memory back to the OS, keeping
    /// the address range reserved: any later access faults (use after free).
    /// </summary>
    public static void Retire(void* p, nuint accessible)
    {
        if (OperatingSystem.IsWindows())
        {
            VirtualFree(p, accessible, MemDecommit);
            return;
        }

        mprotect(p, accessible, ProtNone);
        madvise(p, accessible, MadvDontNeed);
    }

    // ---- reserved address space: reserve once, commit and decommit parts, release all -------------------------

    /// <summary>
    /// Reserves <paramref name="size"/> bytes of address space aligned to <paramref name="alignment"/> (a power of two, a
    /// multiple of the page size), inaccessible and backed by nothing (Linux: <c>PROT_NONE</c> with
    /// <c>MAP_NORESERVE</c>, so it counts against no commit limit; Windows: <c>MEM_RESERVE</c>). Null when refused.
    /// </summary>
    public static void* Reserve(nuint size, nuint alignment)
    {
        if (OperatingSystem.IsWindows())
        {
            return VirtualAllocAligned(size, alignment, MemReserve);
        }

        byte* raw = (byte*)mmap(null, size + alignment, ProtNone, MapPrivate | MapAnonymous | MapNoReserve, -1, 0);
        if (raw == (byte*)-1)
        {
            return null;
        }

        byte* start = (byte*)(((nuint)raw + alignment - 1) & ~(alignment - 1));
        nuint head = (nuint)(start - raw);
        if (head != 0)
        {
            munmap(raw, head);
        }

        nuint tail = alignment - head;
        if (tail != 0)
        {
            munmap(start + size, tail);
        }

        return start;
    }

    /// <summary>
    /// Windows: <paramref name="size"/> bytes aligned to <paramref name="alignment"/> with <paramref name="allocationType"/>.
    /// VirtualAlloc cannot trim, so a larger range is reserved, released, and the aligned address inside taken (another
    /// thread may take it meanwhile: a few attempts). Null when refused.
    /// </summary>
    private static void* VirtualAllocAligned(nuint size, nuint alignment, uint allocationType)
    {
        for (int attempt = 0; attempt < 8; attempt++)
        {
            byte* probe = (byte*)VirtualAlloc(null, size + alignment, MemReserve, PageReadWrite);
            if (probe == null)
            {
                return null;
            }

            VirtualFree(probe, 0, MemRelease);
            byte* aligned = (byte*)(((nuint)probe + alignment - 1) & ~(alignment - 1));
            void* p = VirtualAlloc(aligned, size, allocationType, PageReadWrite);
            if (p != null)
            {
                return p;
            }
        }

        return null;
    }

    /// <summary>Makes pages of a reservation readable and writable; they read as zeros until written. False when refused.</summary>
    public static bool Commit(void* p, nuint size) =>
        OperatingSystem.IsWindows() ? VirtualAlloc(p, size, MemCommit, PageReadWrite) != null : mprotect(p, size, ProtRead | ProtWrite) == 0;

    /// <summary>Gives committed pages of a reservation back to the OS and makes them inaccessible again; the range stays
    /// reserved (Linux: a fresh <c>PROT_NONE</c> mapping over it, which drops the pages at once).</summary>
    public static void Decommit(void* p, nuint size)
    {
        if (OperatingSystem.IsWindows())
        {
            VirtualFree(p, size, MemDecommit);
            return;
        }

        if (mmap(p, size, ProtNone, MapPrivate | MapAnonymous | MapNoReserve | MapFixed, -1, 0) == (void*)-1)
        {
            madvise(p, size, MadvDontNeed); // keeps the range ours either way; the pages go back
            mprotect(p, size, ProtNone);
        }
    }

    /// <summary>Releases a whole reservation from <see cref="Reserve"/>.</summary>
    public static void Release(void* p, nuint size)
    {
        if (OperatingSystem.IsWindows())
        {
            VirtualFree(p, 0, MemRelease);
        }
        else
        {
            munmap(p, size);
        }
    }

    private static readonly int MapNoReserve = OperatingSystem.IsLinux() ? 0x4000 : 0;
    private const int MapFixed = 0x10;

    /// <summary>Unmaps a mapping returned by <see cref="MapGuarded"/>, its guard page included.</summary>
    public static void UnmapGuarded(void* p, nuint accessible)
    {
        if (OperatingSystem.IsWindows())
        {
            VirtualFree(p, 0, MemRelease);
        }
        else
        {
            munmap(p, accessible + PageSize);
        }
    }

    [LibraryImport(NativeLibraries.LibC, EntryPoint = "mprotect")]
    private static partial int mprotect(void* addr, nuint length, int prot);

    [LibraryImport(NativeLibraries.LibC, EntryPoint = "madvise")]
    private static partial int madvise(void* addr, nuint length, int advice);

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
