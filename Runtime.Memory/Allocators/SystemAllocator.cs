using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory;

/// <summary>
/// The system allocator (configuration name <c>malloc</c>): the C runtime's <c>malloc</c> family through
/// <see cref="NativeMemory"/>, with a 16-byte header that remembers the requested size, so domains can account every
/// byte exactly.
/// </summary>
/// <remarks>
/// <para>Block layout: <see cref="SizeHeader"/> (the requested size and the magic word <c>RTMEMSYS</c>, 16 bytes).</para>
/// <para>On 64-bit platforms the C runtime returns 16-byte aligned blocks, so <c>data</c>, 16 bytes further, is
/// 16-byte aligned too. On 32-bit platforms, where malloc only guarantees 8, the aligned variants of
/// <see cref="NativeMemory"/> are used instead.</para>
/// <para>A zero-byte request is a 16-byte C allocation, which is distinct and non-null.</para>
/// <para><see cref="NativeMemory"/> throws <see cref="OutOfMemoryException"/> where the C function returns null; the
/// exception is caught here (cold path) and becomes the null return the contract requires.</para>
/// <para>Cost: one P/Invoke into the C runtime per call plus two stores.</para>
/// </remarks>
public sealed unsafe class SystemAllocator : MemoryAllocator
{
    /// <summary>Bytes in front of every block (<see cref="SizeHeader"/>).</summary>
    internal const int HeaderSize = SizeHeader.Size;

    /// <summary>Largest request this allocator accepts: the domain limit less the header.</summary>
    internal static readonly nuint MaxSize = SizeHeader.MaxRequest;

    /// <summary>"RTMEMSYS" in ASCII, stored after the size word of every block (truncated on 32-bit).</summary>
    private const ulong SystemBlockMagic = 0x5359_534D_454D_5452;

    /// <summary>Whether plain malloc already returns <see cref="MemoryDomain.Alignment"/>-aligned memory.</summary>
    private static readonly bool MallocIsAligned = nuint.Size == 8;

    /// <inheritdoc/>
    public override string Name => "malloc";

    /// <inheritdoc/>
    internal override NativeHeapFunctions? NativeHeap => s_nativeHeap.Value;

    private static readonly Lazy<NativeHeapFunctions?> s_nativeHeap = new(() =>
    {
        if (!MallocIsAligned || !OperatingSystem.IsLinux() || !System.Runtime.InteropServices.NativeLibrary.TryLoad("libc.so.6", out nint libc))
        {
            return null; // blocks need the aligned allocation there; native code calls malloc only where it is 16-byte aligned
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

        void* block;
        try
        {
            block = MallocIsAligned ? NativeMemory.Alloc(size + HeaderSize) : NativeMemory.AlignedAlloc(size + HeaderSize, MemoryDomain.Alignment);
        }
        catch (OutOfMemoryException)
        {
            return null;
        }

        return InitHeader(block, size);
    }

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size)
    {
        if (!SizeMath.TryMultiply(count, size, out nuint total) || total > MaxSize)
        {
            return null;
        }

        void* block;
        try
        {
            if (MallocIsAligned)
            {
                block = NativeMemory.AllocZeroed(total + HeaderSize); // zeroes the header too; InitHeader writes it
            }
            else
            {
                block = NativeMemory.AlignedAlloc(total + HeaderSize, MemoryDomain.Alignment);
                NativeMemory.Clear(block, total + HeaderSize);
            }
        }
        catch (OutOfMemoryException)
        {
            return null;
        }

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

        void* block;
        try
        {
            block = MallocIsAligned
                ? NativeMemory.Realloc(BaseOf(ptr), newSize + HeaderSize)
                : NativeMemory.AlignedRealloc(BaseOf(ptr), newSize + HeaderSize, MemoryDomain.Alignment);
        }
        catch (OutOfMemoryException)
        {
            return null; // the old block is untouched
        }

        return InitHeader(block, newSize);
    }

    /// <inheritdoc/>
    public override void Free(void* ptr)
    {
        if (ptr == null)
        {
            return;
        }

        if (MallocIsAligned)
        {
            NativeMemory.Free(BaseOf(ptr));
        }
        else
        {
            NativeMemory.AlignedFree(BaseOf(ptr));
        }
    }

    /// <inheritdoc/>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public override nuint BlockSize(void* ptr) => SizeHeader.RequestedSize(ptr);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void* InitHeader(void* block, nuint size) => SizeHeader.Write(block, size, unchecked((nuint)SystemBlockMagic));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void* BaseOf(void* ptr) => SizeHeader.BaseOf(ptr, unchecked((nuint)SystemBlockMagic));
}
