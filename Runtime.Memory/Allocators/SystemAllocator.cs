using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Runtime.Memory.Platform;

namespace Runtime.Memory;

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
/// <para>Cost: one P/Invoke into the C library per call plus two stores.</para>
/// </remarks>
public sealed unsafe class SystemAllocator : MemoryAllocator
{
    /// <summary>Bytes in front of every block (<see cref="SizeHeader"/>).</summary>
    internal const int HeaderSize = SizeHeader.Size;

    /// <summary>Largest request this allocator accepts: the domain limit less the header.</summary>
    internal static readonly nuint MaxSize = SizeHeader.MaxRequest;

    /// <summary>"RTMEMSYS" in ASCII, stored after the size word of every block (truncated on 32-bit).</summary>
    private const ulong SystemBlockMagic = 0x5359_534D_454D_5452;

    /// <summary>Whether the C library is called directly (<see cref="CHeap"/>): 64-bit Linux and macOS, where plain
    /// malloc returns <see cref="MemoryDomain.Alignment"/>-aligned memory. Otherwise <see cref="Portable"/>.</summary>
    private static readonly bool CallsLibC = nuint.Size == 8 && (OperatingSystem.IsLinux() || OperatingSystem.IsMacOS());

    /// <inheritdoc/>
    public override string Name => "malloc";

    /// <inheritdoc/>
    public override void* Malloc(nuint size)
    {
        if (size > MaxSize)
        {
            return null;
        }

        nuint total = size + HeaderSize;
        void* block = CallsLibC ? CHeap.Malloc(total) : Portable.Malloc(total);
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
        void* block = CallsLibC ? CHeap.Calloc(1, total + HeaderSize) : Portable.Calloc(total + HeaderSize);
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
        void* block = CallsLibC ? CHeap.Realloc(BaseOf(ptr), newSize + HeaderSize) : Portable.Realloc(BaseOf(ptr), newSize + HeaderSize);
        return InitHeader(block, newSize);
    }

    /// <inheritdoc/>
    public override void Free(void* ptr)
    {
        if (ptr == null)
        {
            return;
        }

        if (CallsLibC)
        {
            CHeap.Free(BaseOf(ptr));
        }
        else
        {
            Portable.Free(BaseOf(ptr));
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
