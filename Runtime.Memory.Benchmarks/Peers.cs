using System.Runtime.InteropServices;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// The peer allocators, called through unmanaged function pointers exactly as our system allocator calls the C
/// runtime (one P/Invoke-style transition per call), so the comparison is of allocators, not of call shapes.
/// </summary>
public static unsafe class Peers
{
    public static readonly delegate* unmanaged<nuint, void*> GlibcMalloc;
    public static readonly delegate* unmanaged<void*, void> GlibcFree;
    public static readonly delegate* unmanaged<nuint, void*> MiMalloc;
    public static readonly delegate* unmanaged<void*, void> MiFree;

    /// <summary>Why mimalloc is missing, or null when it loaded.</summary>
    public static readonly string? MimallocProblem;

    static Peers()
    {
        nint libc = NativeLibrary.Load("libc.so.6");
        GlibcMalloc = (delegate* unmanaged<nuint, void*>)NativeLibrary.GetExport(libc, "malloc");
        GlibcFree = (delegate* unmanaged<void*, void>)NativeLibrary.GetExport(libc, "free");

        if (NativeLibrary.TryLoad("libmimalloc.so.2", out nint mi))
        {
            MiMalloc = (delegate* unmanaged<nuint, void*>)NativeLibrary.GetExport(mi, "mi_malloc");
            MiFree = (delegate* unmanaged<void*, void>)NativeLibrary.GetExport(mi, "mi_free");
        }
        else
        {
            MimallocProblem = "libmimalloc.so.2 not found: install the Debian package libmimalloc2.0 (apt-get install -y libmimalloc2.0)";
        }
    }

    public static bool HasMimalloc => MimallocProblem is null;
}
