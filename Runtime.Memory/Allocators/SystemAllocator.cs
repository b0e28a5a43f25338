using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Runtime.Memory.Platform;

namespace Runtime.Memory.Allocators;

/// <summary>
/// The system allocator (configuration name <c>malloc</c>): the C library's <c>malloc</c> family, called directly,
/// with a 16-byte header that remembers the requested size, so domains can account every byte exactly.
/// </summary>
/// <remarks>
/// <para>Block layout: <see cref="SizeHeader"/> (the requested size and the magic word <c>RTMEMSYS</c>, 16 bytes).</para>
/// <para>On 64-bit Linux and macOS the C functions are imported directly (<see cref="CHeap"/>). They return null on
/// failure, which is the contract's failure, so no exception handling is on the path. The C runtime returns
/// 16-byte aligned blocks there, so <c>data</c>, 16 bytes further, is 16-byte aligned too. A failed <c>realloc</c>
/// leaves the block as it was, header included.</para>
/// <para>Elsewhere (32-bit, where malloc only guarantees 8, and Windows) the calls go through
/// <see cref="NativeMemory"/> (the aligned variants on 32-bit), whose <see cref="OutOfMemoryException"/> is
/// caught in separate methods that the 64-bit Unix path never enters.</para>
/// <para>A zero-byte request is a 16-byte C allocation, which is distinct and non-null.</para>
/// <para>The GC transition. A call whose block is small, <see cref="ShortCallLimit"/> bytes or fewer with the header
/// (requested size at most <see cref="ShortSizeLimit"/>), uses the import without the GC transition
/// (<see cref="SuppressGCTransitionAttribute"/>); a larger one uses the ordinary import. For <c>free</c> the size is
/// the one in the header; a <c>realloc</c> is short when both the old and the new size are. Why that limit:</para>
/// <list type="bullet">
/// <item>Suppressing the transition is only sound for calls that are short and do not wait: the thread stays in
/// cooperative mode, so a garbage collection that starts meanwhile waits until the call returns. (It cannot deadlock:
/// the C heap never calls back into the runtime, and a thread is never suspended by the GC inside such a call, so
/// any C heap lock it takes is released.)</item>
/// <item>glibc (2.26 on) serves <c>malloc</c> and <c>free</c> of up to 1,032 bytes (64-bit) from a per-thread cache,
/// with no lock and no system call, while the cache has a chunk of the size (it keeps up to seven per size).
/// Otherwise (a cache miss, <c>calloc</c>, <c>realloc</c>) the call takes its arena's mutex for a bounded piece of
/// heap work. The work grows with the size: <c>calloc</c> clears and <c>realloc</c> copies up to the size, a free
/// that leaves 64 KiB or more free in one piece consolidates the heap and may trim it, and from 128 KiB (the default
/// <c>M_MMAP_THRESHOLD</c>, which glibc only raises at run time) <c>malloc</c> maps fresh pages and <c>free</c>
/// unmaps them.</item>
/// <item>The transition's cost is flat, a few instructions: a small part of a cached pair, and less than the run-to-run
/// noise from the first size the cache does not serve (docs/BENCHMARKS.md, the raw row). A small gain, so the limit
/// takes it only where the call is a small, bounded piece of work.</item>
/// <item>What remains within the limit is rare and short: waiting for the arena mutex while another thread does its
/// own short piece of work under it; a thread's first call creating its arena (<c>mmap</c>); the heap growing
/// (<c>brk</c>) or being trimmed after a free (<c>brk</c>, <c>madvise</c>). A collection that starts meanwhile
/// waits that long. musl and macOS have no such cache, but their small requests are short in the same way.</item>
/// </list>
/// <para>Cost: one native call per operation plus two stores; below the limit without the transition.</para>
/// </remarks>
public sealed unsafe class SystemAllocator : MemoryAllocator
{
    /// <summary>Bytes in front of every block (<see cref="SizeHeader"/>).</summary>
    internal const int HeaderSize = SizeHeader.Size;

    /// <summary>Largest request this allocator accepts: the domain limit less the header.</summary>
    internal static readonly nuint MaxSize = SizeHeader.MaxRequest;

    /// <summary>
    /// Largest C request, header included, whose call skips the GC transition: 1 KiB, within glibc's per-thread cache
    /// (requests of up to 1,032 bytes). See the class remarks.
    /// </summary>
    internal const nuint ShortCallLimit = 1024;

    /// <summary>Largest requested size whose calls skip the GC transition: <see cref="ShortCallLimit"/> less the header.</summary>
    internal const nuint ShortSizeLimit = ShortCallLimit - HeaderSize;

    /// <summary>"RTMEMSYS" in ASCII, stored after the size word of every block (truncated on 32-bit).</summary>
    private const ulong SystemBlockMagic = 0x5359_534D_454D_5452;

    /// <summary>Whether the C library is called directly (<see cref="CHeap"/>): 64-bit Linux and macOS, where plain
    /// malloc returns <see cref="MemoryDomain.Alignment"/>-aligned memory. Otherwise <see cref="Portable"/>.</summary>
    private static readonly bool CallsLibC = nuint.Size == 8 && (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS());

    /// <inheritdoc/>
    public override string Name => "malloc";

    /// <inheritdoc/>
    internal override NativeHeapFunctions? NativeHeap => s_nativeHeap.Value;

    private static readonly Lazy<NativeHeapFunctions?> s_nativeHeap = new(() =>
    {
        nint libc = 0;
        if (!CallsLibC || !OperatingSystem.IsLinux() || !System.Runtime.InteropServices.NativeLibrary.TryLoad("libc.so.6", out libc))
        {
            return null; // native code calls malloc only where this class does (16-byte aligned blocks)
        }

        return new NativeHeapFunctions(
            System.Runtime.InteropServices.NativeLibrary.GetExport(libc, "malloc"),
            System.Runtime.InteropServices.NativeLibrary.GetExport(libc, "realloc"),
            System.Runtime.InteropServices.NativeLibrary.GetExport(libc, "free"),
            unchecked((nuint)SystemBlockMagic));
    });

    /// <inheritdoc/>
    internal override Pipeline.DomainPipeline CreatePipeline(in Pipeline.PipelineSite site) =>
        site.Limited ? new Pipeline.SystemPipeline<Pipeline.WithBudget>(this, site) : new Pipeline.SystemPipeline<Pipeline.NoBudget>(this, site);

    /// <inheritdoc/>
    public override void* Malloc(nuint size)
    {
        if (size > MaxSize)
        {
            return null;
        }

        nuint total = size + HeaderSize;
        void* block = !CallsLibC ? Portable.Malloc(total)
            : size <= ShortSizeLimit ? CHeap.MallocShort(total)
            : CHeap.Malloc(total);
        return InitHeader(block, size);
    }

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size)
    {
        if (!SizeMath.TryMultiply(count, size, out nuint total) || total > MaxSize)
        {
            return null;
        }

        // calloc zeroes the header too; InitHeader writes it.
        void* block = !CallsLibC ? Portable.Calloc(total + HeaderSize)
            : total <= ShortSizeLimit ? CHeap.CallocShort(1, total + HeaderSize)
            : CHeap.Calloc(1, total + HeaderSize);
        return InitHeader(block, total);
    }

    /// <inheritdoc/>
    public override void* Realloc(void* ptr, nuint newSize)
    {
        if (ptr == null)
        {
            return Malloc(newSize);
        }

        if (newSize > MaxSize)
        {
            return null;
        }

        // On failure each returns null and the old block, header included, is untouched.
        void* block = !CallsLibC ? Portable.Realloc(BaseOf(ptr), newSize + HeaderSize)
            : newSize <= ShortSizeLimit && SizeHeader.RequestedSize(ptr) <= ShortSizeLimit ? CHeap.ReallocShort(BaseOf(ptr), newSize + HeaderSize)
            : CHeap.Realloc(BaseOf(ptr), newSize + HeaderSize);
        return InitHeader(block, newSize);
    }

    /// <inheritdoc/>
    public override void Free(void* ptr)
    {
        if (ptr == null)
        {
            return;
        }

        if (!CallsLibC)
        {
            Portable.Free(BaseOf(ptr));
        }
        else if (SizeHeader.RequestedSize(ptr) <= ShortSizeLimit)
        {
            CHeap.FreeShort(BaseOf(ptr));
        }
        else
        {
            CHeap.Free(BaseOf(ptr));
        }
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override nuint BlockSize(void* ptr) => SizeHeader.RequestedSize(ptr);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void* InitHeader(void* block, nuint size) => SizeHeader.Write(block, size, unchecked((nuint)SystemBlockMagic));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void* BaseOf(void* ptr) => SizeHeader.BaseOf(ptr, unchecked((nuint)SystemBlockMagic));

    /// <summary>
    /// The C runtime through <see cref="NativeMemory"/>, where <see cref="CHeap"/> is not used: 32-bit (the aligned
    /// variants, since malloc only guarantees 8 there) and Windows. <see cref="NativeMemory"/> throws
    /// <see cref="OutOfMemoryException"/> where the C function returns null; it is caught here and becomes the null
    /// return the contract requires. Kept out of line so that the exception handling stays off the direct path.
    /// </summary>
    private static class Portable
    {
        private static readonly bool MallocIsAligned = nuint.Size == 8;

        [MethodImpl(MethodImplOptions.NoInlining)]
        public static void* Malloc(nuint total)
        {
            try
            {
                return MallocIsAligned ? NativeMemory.Alloc(total) : NativeMemory.AlignedAlloc(total, MemoryDomain.Alignment);
            }
            catch (OutOfMemoryException)
            {
                return null;
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        public static void* Calloc(nuint total)
        {
            try
            {
                if (MallocIsAligned)
                {
                    return NativeMemory.AllocZeroed(total);
                }

                void* block = NativeMemory.AlignedAlloc(total, MemoryDomain.Alignment);
                NativeMemory.Clear(block, total);
                return block;
            }
            catch (OutOfMemoryException)
            {
                return null;
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        public static void* Realloc(void* block, nuint total)
        {
            try
            {
                return MallocIsAligned ? NativeMemory.Realloc(block, total) : NativeMemory.AlignedRealloc(block, total, MemoryDomain.Alignment);
            }
            catch (OutOfMemoryException)
            {
                return null; // the old block is untouched
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        public static void Free(void* block)
        {
            if (MallocIsAligned)
            {
                NativeMemory.Free(block);
            }
            else
            {
                NativeMemory.AlignedFree(block);
            }
        }
    }
}
