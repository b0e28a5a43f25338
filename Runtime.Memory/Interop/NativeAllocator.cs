using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>An allocator that is a C struct underneath, so that exporting it gives the struct back exactly.</summary>
internal interface INativeAllocatorView
{
    /// <summary>The struct as C gave it.</summary>
    RtMemAllocator Native { get; }
}

/// <summary>
/// An allocator written in C (an <see cref="RtMemAllocator"/>) used as a domain's base allocator: managed callers reach
/// it through its function pointers, native callers that hold the struct call it without entering managed code.
/// </summary>
/// <remarks>
/// The C struct has no size function, so the sizes of the blocks handed out through this wrapper are kept in a striped
/// table for <see cref="BlockSize"/> (the domain's accounting); blocks that native code allocates by calling the struct
/// directly are not in it and count as size 0 if a domain frees them. A zero-byte request asks C for one byte, so the
/// contract's distinct non-null block holds whatever the C allocator does for <c>malloc(0)</c>.
/// </remarks>
public sealed unsafe class NativeAllocator : MemoryAllocator, INativeAllocatorView
{
    private readonly RtMemAllocator _native;
    private readonly SizeTable _sizes = new();

    /// <summary>Wraps <paramref name="native"/>, whose four functions must be set.</summary>
    /// <exception cref="ArgumentException">A function pointer is null.</exception>
    public NativeAllocator(RtMemAllocator native)
    {
        if (!native.IsComplete)
        {
            throw new ArgumentException("A native allocator needs all four functions: malloc, calloc, realloc and free.", nameof(native));
        }

        _native = native;
    }

    /// <inheritdoc/>
    public override string Name => "native";

    /// <summary>The C struct.</summary>
    public RtMemAllocator Native => _native;

    /// <inheritdoc/>
    public override void* Malloc(nuint size)
    {
        void* p = _native.Malloc(_native.Ctx, size == 0 ? 1 : size);
        if (p != null)
        {
            _sizes.Set(p, size);
        }

        return p;
    }

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size)
    {
        if (!SizeMath.TryMultiply(count, size, out nuint total))
        {
            return null;
        }

        void* p = total == 0 ? _native.Calloc(_native.Ctx, 1, 1) : _native.Calloc(_native.Ctx, count, size);
        if (p != null)
        {
            _sizes.Set(p, total);
        }

        return p;
    }

    /// <inheritdoc/>
    public override void* Realloc(void* ptr, nuint newSize)
    {
        if (ptr == null)
        {
            return Malloc(newSize);
        }

        void* p = _native.Realloc(_native.Ctx, ptr, newSize == 0 ? 1 : newSize);
        if (p != null)
        {
            _sizes.Remove(ptr);
            _sizes.Set(p, newSize);
        }

        return p;
    }

    /// <inheritdoc/>
    public override void Free(void* ptr)
    {
        if (ptr != null)
        {
            _sizes.Remove(ptr);
            _native.Free(_native.Ctx, ptr);
        }
    }

    /// <inheritdoc/>
    public override nuint BlockSize(void* ptr) => _sizes.Get(ptr);

    /// <summary>Block sizes by address, in 16 stripes so that threads rarely share a lock.</summary>
    private sealed class SizeTable
    {
        private const int Stripes = 16;
        private readonly Dictionary<nint, nuint>[] _maps = Enumerable.Range(0, Stripes).Select(_ => new Dictionary<nint, nuint>()).ToArray();
        private readonly Lock[] _locks = Enumerable.Range(0, Stripes).Select(_ => new Lock()).ToArray();

        public void Set(void* p, nuint size)
        {
            int s = StripeOf(p);
            lock (_locks[s])
            {
                _maps[s][(nint)p] = size;
            }
        }

        public void Remove(void* p)
        {
            int s = StripeOf(p);
            lock (_locks[s])
            {
                _maps[s].Remove((nint)p);
            }
        }

        public nuint Get(void* p)
        {
            int s = StripeOf(p);
            lock (_locks[s])
            {
                return _maps[s].TryGetValue((nint)p, out nuint size) ? size : 0;
            }
        }

        private static int StripeOf(void* p) => (int)(((ulong)p >> 4) * 0x9E37_79B9_7F4A_7C15UL >> 60);
    }
}
