using System.Buffers;
using System.Runtime.CompilerServices;

namespace Runtime.Memory.Buffers;

/// <summary>
/// One buffer rented from a <see cref="RuntimeMemoryPool"/>: a <see cref="MemoryManager{T}"/> over one block of a
/// domain, which its <see cref="IDisposable.Dispose"/> frees through that domain.
/// </summary>
/// <remarks>
/// <para><b>State</b>, one <see cref="int"/> changed only by atomic operations:</para>
/// <code>
///   _state = [ Disposed bit (sign) | pins (31 bits) ]
///   0                 rented, not pinned
///   n > 0             rented, pinned n times (Pin without its Unpin yet)
///   Disposed | n > 0  disposed while pinned: the block is still allocated, the last Unpin frees it
///   Disposed          disposed and unpinned: the block has been freed (or is being freed by the thread that got here)
/// </code>
/// <para><b>Invariants.</b> The block is freed exactly once, by the one thread whose atomic operation moved the state to
/// exactly <see cref="Disposed"/>: <see cref="Dispose(bool)">Dispose</see> setting the bit while no pin is held, or the last
/// <see cref="Unpin"/> after <see cref="Dispose(bool)">Dispose</see>. The bit is never cleared, so a second (or racing) Dispose
/// sees it and does nothing. Pins are taken only while the bit is clear (compare-exchange), so no pin is ever taken on a
/// freed block. Once the bit is set, <see cref="Memory"/>, <see cref="GetSpan"/> and <see cref="Pin"/> throw
/// <see cref="ObjectDisposedException"/> without reading the block.</para>
/// <para><b>Not reused.</b> An owner is made for one rental and never recycled: a reference kept after Dispose can only
/// ever see this owner's Disposed state, never another rental's block. The cost (one small managed object per rental)
/// is measured against a raw malloc/free pair in <c>PoolBenchmarks</c>.</para>
/// <para><b>No finalizer.</b> An owner that is never disposed leaks its block as native memory does: it stays live in
/// the domain's statistics (and in the tracer's leak report while tracing), which is how a leak is found; a finalizer
/// would cost every rental and free blocks on the finalizer thread at an unknown time.</para>
/// <para>A span taken from the owner and used while another thread disposes it is a use after free, as with any
/// <see cref="MemoryManager{T}"/> (or an array returned to <see cref="ArrayPool{T}"/>): Dispose once nobody uses it.</para>
/// </remarks>
internal sealed unsafe class NativeBlockOwner : MemoryManager<byte>, IDisposable
{
    /// <summary>The sign bit of <see cref="_state"/>: Dispose has been called.</summary>
    private const int Disposed = int.MinValue;

    /// <summary>The mask of the pin count in <see cref="_state"/>.</summary>
    private const int PinMask = int.MaxValue;

    /// <summary>The domain the block came from and goes back to.</summary>
    private readonly MemoryDomain _domain;

    /// <summary>The block's first byte; set once, right after the block is allocated (never null once rented).</summary>
    private byte* _pointer;

    /// <summary>The length rented: exactly what was asked for, so a write past it is an overrun the debug hooks see.</summary>
    private readonly int _length;

    /// <summary>Disposed bit and pin count (see the remarks).</summary>
    private int _state;

    /// <summary>An owner for <paramref name="length"/> bytes of <paramref name="domain"/>; the block is attached by
    /// <see cref="RuntimeMemoryPool.Rent"/> once allocated (the owner is made first, so that no block is left unowned).</summary>
    internal NativeBlockOwner(MemoryDomain domain, int length)
    {
        _domain = domain;
        _length = length;
    }

    /// <summary>Attaches the block just allocated for this owner.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Attach(void* block) => _pointer = (byte*)block;

    /// <summary>The domain the buffer's block belongs to.</summary>
    internal MemoryDomain Domain => _domain;

    /// <summary>Whether Dispose has been called.</summary>
    internal bool IsDisposed => Volatile.Read(ref _state) < 0;

    /// <inheritdoc/>
    /// <exception cref="ObjectDisposedException">After Dispose.</exception>
    public override Memory<byte> Memory
    {
        get
        {
            ThrowIfDisposed();
            return CreateMemory(_length);
        }
    }

    /// <inheritdoc/>
    /// <exception cref="ObjectDisposedException">After Dispose (a <see cref="Memory{T}"/> taken before it throws too).</exception>
    public override Span<byte> GetSpan()
    {
        ThrowIfDisposed();
        return new Span<byte>(_pointer, _length);
    }

    /// <summary>
    /// Native memory does not move, so pinning only counts: the returned handle's pointer stays valid until the handle
    /// is disposed, even if the owner is disposed first (the free then waits for the last <see cref="Unpin"/>).
    /// </summary>
    /// <exception cref="ObjectDisposedException">After Dispose.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="elementIndex"/> is negative or past the end.</exception>
    public override MemoryHandle Pin(int elementIndex = 0)
    {
        if ((uint)elementIndex > (uint)_length)
        {
            throw new ArgumentOutOfRangeException(nameof(elementIndex), elementIndex, $"The buffer has {_length} bytes.");
        }

        int state = Volatile.Read(ref _state);
        while (true)
        {
            if (state < 0)
            {
                ThrowDisposed();
            }

            if (state == PinMask)
            {
                throw new InvalidOperationException($"The buffer is already pinned {PinMask} times.");
            }

            int seen = Interlocked.CompareExchange(ref _state, state + 1, state);
            if (seen == state)
            {
                return new MemoryHandle(_pointer + elementIndex, default, this);
            }

            state = seen;
        }
    }

    /// <summary>Releases one pin; the last one after Dispose frees the block.</summary>
    /// <exception cref="InvalidOperationException">More unpins than pins.</exception>
    public override void Unpin()
    {
        int state = Volatile.Read(ref _state);
        while (true)
        {
            if ((state & PinMask) == 0)
            {
                throw new InvalidOperationException("Unpin without a matching Pin (a MemoryHandle disposed twice, or a copy of one disposed).");
            }

            int seen = Interlocked.CompareExchange(ref _state, state - 1, state);
            if (seen == state)
            {
                if (state - 1 == Disposed)
                {
                    Release(); // disposed while pinned, and this was the last pin
                }

                return;
            }

            state = seen;
        }
    }

    /// <summary>
    /// Frees the block through its domain, once: the first call sets the Disposed bit (one atomic operation) and frees
    /// unless a pin is held; any later or racing call does nothing and reads nothing from the block.
    /// </summary>
    /// <remarks>
    /// Cost: one atomic read-modify-write on the owner and the domain's free. Under the debug hooks with
    /// <see cref="ViolationAction.Throw"/>, a damaged block (an overrun past the rented length) makes this throw the
    /// <see cref="MemoryViolationException"/>; the owner is disposed all the same (a second Dispose does nothing).
    /// </remarks>
    protected override void Dispose(bool disposing) => DisposeOnce();

    /// <summary>
    /// The interface Dispose (<c>IMemoryOwner&lt;byte&gt;.Dispose</c>), reimplemented to go straight to <see cref="DisposeOnce"/>:
    /// <see cref="MemoryManager{T}"/>'s own calls the virtual <see cref="Dispose(bool)">Dispose</see> and then
    /// <see cref="GC.SuppressFinalize"/>, which an owner without a finalizer does not need.
    /// </summary>
    void IDisposable.Dispose() => DisposeOnce();

    /// <summary>The one atomic step that decides who frees (see the invariants).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void DisposeOnce()
    {
        if (Interlocked.Or(ref _state, Disposed) == 0)
        {
            Release();
        }
    }

    /// <summary>Frees the block; called exactly once (see the invariants).</summary>
    private void Release() => _domain.Free(_pointer);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ThrowIfDisposed()
    {
        if (Volatile.Read(ref _state) < 0)
        {
            ThrowDisposed();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ThrowDisposed() =>
        throw new ObjectDisposedException(nameof(RuntimeMemoryPool) + " buffer",
            $"This buffer of {_length:N0} bytes rented from the {_domain.Name} domain has been disposed: its memory went back to the domain and can no longer be used.");
}
