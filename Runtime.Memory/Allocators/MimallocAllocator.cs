using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Runtime.Memory.Platform;

namespace Runtime.Memory.Allocators;

/// <summary>
/// The mimalloc backend (configuration names <c>mimalloc</c>, <c>mimalloc_debug</c>): Microsoft's mimalloc, the
/// system's <c>libmimalloc.so.2</c> (Debian package <c>libmimalloc2.0</c>), in every domain, with the same 16-byte
/// <see cref="SizeHeader"/> as <see cref="SystemAllocator"/>, so domains account exactly the bytes requested.
/// </summary>
/// <remarks>
/// <para>Block layout: <see cref="SizeHeader"/> (the requested size and the magic word <c>RTMEMMIM</c>).</para>
/// <para>Alignment: the C blocks come from mimalloc's <c>*_aligned</c> entry points with alignment 16, which mimalloc
/// documents; for these sizes (every C request is at least the 16-byte header) they take mimalloc's ordinary fast
/// path.</para>
/// <para>Failure: mimalloc returns null (its default, <c>mi_option_reserve_*</c> unset) and a failed
/// <c>mi_realloc_aligned</c> leaves the block as it was, which is the contract. Requests above
/// <see cref="SizeHeader.MaxRequest"/> return null before any call.</para>
/// <para>A missing library is found at start: <see cref="DescribeLoadProblem"/> is what configuration validation
/// reports for the two names, and the constructor throws <see cref="DllNotFoundException"/> with the same text.</para>
/// <para>Cost: one native call per operation, as for <c>malloc</c>.</para>
/// </remarks>
public sealed unsafe partial class MimallocAllocator : MemoryAllocator
{
    /// <summary>"RTMEMMIM" in ASCII, stored after the size word of every block (truncated on 32-bit).</summary>
    private const ulong MimallocBlockMagic = 0x4D49_4D4D_454D_5452;

    private const nuint CAlignment = MemoryDomain.Alignment;

    private static readonly Lazy<string?> s_loadProblem = new(() => DescribeLoadProblem(NativeLibraries.CandidatesOf(NativeLibraries.Mimalloc)));

    static MimallocAllocator() => NativeLibraries.EnsureResolver();

    /// <summary>A mimalloc backend.</summary>
    /// <exception cref="DllNotFoundException">mimalloc cannot be loaded; the message says which files were tried and what to install.</exception>
    public MimallocAllocator()
    {
        if (s_loadProblem.Value is { } problem)
        {
            throw new DllNotFoundException(problem);
        }
    }

    /// <summary>Why mimalloc cannot be used on this machine, or <see langword="null"/> when it loads.</summary>
    public static string? LoadProblem => s_loadProblem.Value;

    /// <summary>mimalloc's version, e.g. <c>2.0.9</c>.</summary>
    /// <exception cref="DllNotFoundException">mimalloc is not installed.</exception>
    public static string Version
    {
        get
        {
            int v = MiVersion();
            return $"{v / 100}.{v / 10 % 10}.{v % 10}";
        }
    }

    /// <inheritdoc/>
    public override string Name => "mimalloc";

    /// <summary>mi_malloc, mi_realloc and mi_free (16-byte aligned on 64-bit, as every block must be), for native code.</summary>
    internal override NativeHeapFunctions? NativeHeap => s_nativeHeap.Value;

    private static readonly Lazy<NativeHeapFunctions?> s_nativeHeap = new(() =>
    {
        if (nint.Size != 8)
        {
            return null;
        }

        nint mi = 0;
        foreach (string candidate in NativeLibraries.CandidatesOf(NativeLibraries.Mimalloc))
        {
            if (NativeLibrary.TryLoad(candidate, out mi))
            {
                break;
            }
        }

        if (mi == 0)
        {
            return null;
        }

        return new NativeHeapFunctions(
            NativeLibrary.GetExport(mi, "mi_malloc"), NativeLibrary.GetExport(mi, "mi_realloc"), NativeLibrary.GetExport(mi, "mi_free"),
            unchecked((nuint)MimallocBlockMagic));
    });

    /// <summary>
    /// Whether one of <paramref name="candidates"/> loads and exports mimalloc's functions; if not, the sentence that
    /// says so, naming the files tried and the package to install.
    /// </summary>
    internal static string? DescribeLoadProblem(IReadOnlyList<string> candidates)
    {
        foreach (string candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, out nint handle))
            {
                return NativeLibrary.TryGetExport(handle, "mi_malloc_aligned", out _)
                    ? null
                    : $"the mimalloc backend found {candidate}, but it does not export mi_malloc_aligned (not mimalloc 1.x or 2.x?).";
            }
        }

        return $"the mimalloc backend needs mimalloc, and none of {string.Join(", ", candidates)} could be loaded. Install the Debian package libmimalloc2.0 (apt-get install libmimalloc2.0).";
    }

    /// <inheritdoc/>
    public override void* Malloc(nuint size)
    {
        if (size > SizeHeader.MaxRequest)
        {
            return null;
        }

        return Header(MiMallocAligned(size + SizeHeader.Size, CAlignment), size);
    }

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size)
    {
        if (!SizeMath.TryMultiply(count, size, out nuint total) || total > SizeHeader.MaxRequest)
        {
            return null;
        }

        return Header(MiZallocAligned(total + SizeHeader.Size, CAlignment), total);
    }

    /// <inheritdoc/>
    public override void* Realloc(void* ptr, nuint newSize)
    {
        if (ptr == null)
        {
            return Malloc(newSize);
        }

        if (newSize > SizeHeader.MaxRequest)
        {
            return null;
        }

        return Header(MiReallocAligned(BaseOf(ptr), newSize + SizeHeader.Size, CAlignment), newSize);
    }

    /// <inheritdoc/>
    public override void Free(void* ptr)
    {
        if (ptr != null)
        {
            MiFree(BaseOf(ptr));
        }
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override nuint BlockSize(void* ptr) => SizeHeader.RequestedSize(ptr);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void* Header(void* block, nuint size) => SizeHeader.Write(block, size, unchecked((nuint)MimallocBlockMagic));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void* BaseOf(void* ptr) => SizeHeader.BaseOf(ptr, unchecked((nuint)MimallocBlockMagic));

    /// <summary><c>void* mi_malloc_aligned(size_t size, size_t alignment)</c>.</summary>
    [LibraryImport(NativeLibraries.Mimalloc, EntryPoint = "mi_malloc_aligned")]
    private static partial void* MiMallocAligned(nuint size, nuint alignment);

    /// <summary><c>void* mi_zalloc_aligned(size_t size, size_t alignment)</c>: zeroed.</summary>
    [LibraryImport(NativeLibraries.Mimalloc, EntryPoint = "mi_zalloc_aligned")]
    private static partial void* MiZallocAligned(nuint size, nuint alignment);

    /// <summary><c>void* mi_realloc_aligned(void* p, size_t newsize, size_t alignment)</c>.</summary>
    [LibraryImport(NativeLibraries.Mimalloc, EntryPoint = "mi_realloc_aligned")]
    private static partial void* MiReallocAligned(void* p, nuint newSize, nuint alignment);

    /// <summary><c>void mi_free(void* p)</c>.</summary>
    [LibraryImport(NativeLibraries.Mimalloc, EntryPoint = "mi_free")]
    private static partial void MiFree(void* p);

    /// <summary><c>int mi_version(void)</c>: 209 for 2.0.9.</summary>
    [LibraryImport(NativeLibraries.Mimalloc, EntryPoint = "mi_version")]
    private static partial int MiVersion();
}
