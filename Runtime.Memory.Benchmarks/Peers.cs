using System.Runtime.InteropServices;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// The peer allocators, called through unmanaged function pointers: one P/Invoke-style transition per call, which
/// is how a C# interpreter would reach them.
/// </summary>
public static unsafe class Peers
{
    public static readonly delegate* unmanaged<nuint, void*> GlibcMalloc;
    public static readonly delegate* unmanaged<void*, void> GlibcFree;
    public static readonly delegate* unmanaged<void*, nuint, void*> GlibcRealloc;
    public static readonly delegate* unmanaged<nuint, void*> MiMalloc;
    public static readonly delegate* unmanaged<void*, void> MiFree;
    public static readonly delegate* unmanaged<void*, nuint, void*> MiRealloc;

    public static readonly delegate* unmanaged<nuint, void*> TcMalloc;
    public static readonly delegate* unmanaged<void*, void> TcFree;
    public static readonly delegate* unmanaged<void*, nuint, void*> TcRealloc;

    /// <summary>Why mimalloc is missing, or null when it loaded.</summary>
    public static readonly string? MimallocProblem;

    /// <summary>Why tcmalloc is missing, or null when it loaded.</summary>
    public static readonly string? TcmallocProblem;

    private static int s_reported;
    private static int s_reportedTc;

    static Peers()
    {
        nint libc = NativeLibrary.Load("libc.so.6");
        GlibcMalloc = (delegate* unmanaged<nuint, void*>)NativeLibrary.GetExport(libc, "malloc");
        GlibcFree = (delegate* unmanaged<void*, void>)NativeLibrary.GetExport(libc, "free");
        GlibcRealloc = (delegate* unmanaged<void*, nuint, void*>)NativeLibrary.GetExport(libc, "realloc");

        if (NativeLibrary.TryLoad("libmimalloc.so.2", out nint mi))
        {
            MiMalloc = (delegate* unmanaged<nuint, void*>)NativeLibrary.GetExport(mi, "mi_malloc");
            MiFree = (delegate* unmanaged<void*, void>)NativeLibrary.GetExport(mi, "mi_free");
            MiRealloc = (delegate* unmanaged<void*, nuint, void*>)NativeLibrary.GetExport(mi, "mi_realloc");
        }
        else
        {
            MimallocProblem = "mimalloc is missing: libmimalloc.so.2 not found. Install the Debian package libmimalloc2.0 (apt-get install -y libmimalloc2.0); the mimalloc rows measure nothing until then.";
        }

        // gperftools' tcmalloc (minimal: no heap profiler), through its tc_* names, so it sits beside glibc in this
        // process without replacing malloc.
        if (NativeLibrary.TryLoad("libtcmalloc_minimal.so.4", out nint tc))
        {
            TcMalloc = (delegate* unmanaged<nuint, void*>)NativeLibrary.GetExport(tc, "tc_malloc");
            TcFree = (delegate* unmanaged<void*, void>)NativeLibrary.GetExport(tc, "tc_free");
            TcRealloc = (delegate* unmanaged<void*, nuint, void*>)NativeLibrary.GetExport(tc, "tc_realloc");
        }
        else
        {
            TcmallocProblem = "tcmalloc is missing: libtcmalloc_minimal.so.4 not found. Install the Debian package libtcmalloc-minimal4 (apt-get install -y libtcmalloc-minimal4); the tcmalloc rows measure nothing until then.";
        }
    }

    public static bool HasMimalloc => MimallocProblem is null;

    public static bool HasTcmalloc => TcmallocProblem is null;

    /// <summary>As <see cref="CheckMimalloc"/>, for tcmalloc.</summary>
    public static bool CheckTcmalloc()
    {
        if (HasTcmalloc)
        {
            return true;
        }

        if (Interlocked.Exchange(ref s_reportedTc, 1) == 0)
        {
            Console.WriteLine(TcmallocProblem);
        }

        return false;
    }

    /// <summary>
    /// True when mimalloc can run; otherwise prints <see cref="MimallocProblem"/> once per process and returns false,
    /// so a mimalloc benchmark does nothing. It goes to stdout: BenchmarkDotNet copies a benchmark process's stdout
    /// into its console and its log file (stderr reaches the console only).
    /// </summary>
    public static bool CheckMimalloc()
    {
        if (HasMimalloc)
        {
            return true;
        }

        if (Interlocked.Exchange(ref s_reported, 1) == 0)
        {
            Console.WriteLine(MimallocProblem);
        }

        return false;
    }
}

/// <summary>One allocator as the workloads see it; implemented by structs so generic workloads compile per allocator with no dispatch.</summary>
public unsafe interface IAllocatorOps
{
    void* Malloc(nuint size);

    void Free(void* p);

    void* Realloc(void* p, nuint size);
}

public readonly unsafe struct GlibcOps : IAllocatorOps
{
    public void* Malloc(nuint size) => Peers.GlibcMalloc(size);

    public void Free(void* p) => Peers.GlibcFree(p);

    public void* Realloc(void* p, nuint size) => Peers.GlibcRealloc(p, size);
}

public readonly unsafe struct MimallocOps : IAllocatorOps
{
    public void* Malloc(nuint size) => Peers.MiMalloc(size);

    public void Free(void* p) => Peers.MiFree(p);

    public void* Realloc(void* p, nuint size) => Peers.MiRealloc(p, size);
}

public readonly unsafe struct TcmallocOps : IAllocatorOps
{
    public void* Malloc(nuint size) => Peers.TcMalloc(size);

    public void Free(void* p) => Peers.TcFree(p);

    public void* Realloc(void* p, nuint size) => Peers.TcRealloc(p, size);
}

/// <summary>One of our domains (obj, or raw), through its public front door.</summary>
public readonly unsafe struct DomainOps(MemoryDomain domain) : IAllocatorOps
{
    public void* Malloc(nuint size) => domain.Malloc(size);

    public void Free(void* p) => domain.Free(p);

    public void* Realloc(void* p, nuint size) => domain.Realloc(p, size);
}

/// <summary>Request sizes shared by the workloads: 8–512 bytes, 80 % in 16–64 (an interpreter's objects).</summary>
public static class Sizes
{
    public static nuint[] Mixed(int count, int seed)
    {
        var rng = new Random(seed);
        var sizes = new nuint[count];
        for (int i = 0; i < count; i++)
        {
            sizes[i] = (nuint)(rng.Next(100) < 80 ? rng.Next(16, 65) : rng.Next(8, 513));
        }

        return sizes;
    }
}
