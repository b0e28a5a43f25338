using System.Runtime.InteropServices;

namespace Runtime.Memory.Buffers;

/// <summary>
/// One block of a domain owned by a <see cref="SafeHandle"/>, for code that hands native memory to P/Invoke: pass the
/// handle itself as a parameter (the marshaller adds a reference for the call, so the block cannot be freed under it)
/// and dispose it when done. Get one with <c>domain.AllocateHandle(size)</c> or <see cref="Allocate"/>.
/// </summary>
/// <remarks>
/// <para>The block is accounted, budgeted, traced and checked by the debug hooks like any block of the domain.
/// <see cref="ReleaseHandle"/> frees it through the domain once, when the handle is closed and no
/// <see cref="SafeHandle.DangerousAddRef"/> is outstanding (SafeHandle's rules); it never throws. A handle never
/// disposed is freed by the finalizer, as for every <see cref="SafeHandle"/>; after the runtime is disposed the free
/// does nothing (the domain is closed).</para>
/// <para>Under the debug hooks, a damaged block found at release is reported as a native call's would be: logged, never
/// thrown, whatever <see cref="ViolationAction"/> says (release may run on the finalizer thread).</para>
/// </remarks>
public sealed unsafe class RuntimeMemoryHandle : SafeHandle
{
    private readonly MemoryDomain _domain;

    private RuntimeMemoryHandle(MemoryDomain domain, nuint size)
        : base(IntPtr.Zero, ownsHandle: true)
    {
        _domain = domain;
        Size = size;
    }

    /// <summary>
    /// Allocates <paramref name="size"/> uninitialised bytes in <paramref name="domain"/> (0 gives a distinct non-null
    /// block, as the domain does), owned by the returned handle.
    /// </summary>
    /// <exception cref="InsufficientMemoryException">The domain's budget refused the block.</exception>
    /// <exception cref="OutOfMemoryException">The domain's allocator returned null, or <paramref name="size"/> is above
    /// <see cref="MemoryDomain.MaxRequestSize"/>.</exception>
    /// <exception cref="ObjectDisposedException">The runtime that owns the domain is disposed.</exception>
    public static RuntimeMemoryHandle Allocate(MemoryDomain domain, nuint size)
    {
        ArgumentNullException.ThrowIfNull(domain);
        var owner = new RuntimeMemoryHandle(domain, size); // made first: no block is ever left without its owner
        void* block = domain.Malloc(size);
        if (block == null)
        {
            owner.SetHandleAsInvalid(); // nothing to release; no finalization either
            BufferFailures.ThrowRefused(domain, size, "a handle's block");
        }

        owner.SetHandle((nint)block);
        return owner;
    }

    /// <summary>The size of the block in bytes, as requested.</summary>
    public nuint Size { get; }

    /// <summary>The domain the block belongs to.</summary>
    public MemoryDomain Domain => _domain;

    /// <inheritdoc/>
    public override bool IsInvalid => handle == IntPtr.Zero;

    /// <summary>Set by the first Dispose (or Close): the handle takes no new users, though the block stays until the last
    /// <see cref="SafeHandle.DangerousAddRef"/> is released (SafeHandle's own disposed state is not public).</summary>
    private volatile bool _disposed;

    /// <summary>The block as a span. Keep the handle open while the span is used (a span does not hold a reference).</summary>
    /// <exception cref="ObjectDisposedException">The handle is disposed or closed (even while a
    /// <see cref="SafeHandle.DangerousAddRef"/> still keeps the block allocated).</exception>
    /// <exception cref="InvalidOperationException">The block is larger than a span can be (<see cref="int.MaxValue"/> bytes).</exception>
    public Span<byte> AsSpan()
    {
        if (_disposed || IsClosed || IsInvalid)
        {
            throw new ObjectDisposedException(nameof(RuntimeMemoryHandle),
                $"This handle of {Size:N0} bytes from the {_domain.Name} domain is closed: its block went back to the domain.");
        }

        if (Size > int.MaxValue)
        {
            throw new InvalidOperationException($"The block has {Size:N0} bytes, more than a span can cover ({int.MaxValue:N0}).");
        }

        return new Span<byte>((void*)handle, (int)Size);
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        _disposed = true;
        base.Dispose(disposing);
    }

    /// <summary>Frees the block through its domain; never throws (see the remarks).</summary>
    protected override bool ReleaseHandle()
    {
        try
        {
            using NativeCallScope scope = NativeCallScope.Enter(); // debug violations are logged, not thrown
            _domain.Free((void*)handle);
            return true;
        }
        catch (Exception)
        {
            return false; // unreachable by the domain's contract (a free throws only a MemoryViolationException, outside a native scope)
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"{nameof(RuntimeMemoryHandle)} of {Size:N0} bytes in the {_domain.Name} domain{(IsClosed ? " (closed)" : "")}";
}
