using System.Buffers;

namespace Runtime.Memory.Buffers;

/// <summary>
/// A <see cref="MemoryPool{T}"/> of bytes whose buffers are blocks of one <see cref="MemoryDomain"/>: safe code (and
/// <c>System.IO.Pipelines</c>, sockets, streams) gets native memory that is accounted, budgeted, traced and checked by
/// the debug hooks like any block of the domain, without an <c>unsafe</c> block.
/// </summary>
/// <remarks>
/// <para><b>Getting one.</b> <c>domain.AsMemoryPool()</c> gives the domain's shared pool (one per domain, made on first
/// use; its <see cref="IDisposable.Dispose"/> does nothing, like <see cref="MemoryPool{T}.Shared"/>). For dependency
/// injection, <c>services.AddSingleton&lt;MemoryPool&lt;byte&gt;, RuntimeMemoryPool&gt;()</c> builds one over the
/// <c>obj</c> domain of the registered <see cref="IRuntimeMemory"/>; <c>new RuntimeMemoryPool(domain)</c> over any
/// domain. A pool built with <c>new</c> refuses to rent once disposed; buffers already rented stay valid.</para>
/// <para><b>Rent.</b> <see cref="Rent"/> returns a buffer of exactly the size asked for (<see cref="DefaultBufferSize"/>
/// for <c>-1</c>), at most <see cref="MaxBufferSize"/>, 16-byte aligned, uninitialised. It never returns null: a refused
/// allocation throws (see <see cref="Rent"/>). Disposing the buffer frees the block, exactly once; a second Dispose
/// does nothing; after Dispose the buffer's <c>Memory</c>, <c>GetSpan</c> and <c>Pin</c> throw
/// <see cref="ObjectDisposedException"/> without touching the freed memory.</para>
/// <para><b>Pinning.</b> Native memory never moves. <c>Pin</c> counts a pin and returns a handle over the block;
/// Dispose while pinned does not free: the block stays valid (and live in the statistics) until the last pin's handle
/// is disposed, which then frees it. A pin never released leaks the block.</para>
/// <para><b>Leaks.</b> Buffers have no finalizer: one never disposed stays live in the domain's statistics and in the
/// tracer's leak report, as a native block would. Each rental makes one small managed object (its owner), never
/// reused, so a stale reference can never reach another rental's memory.</para>
/// <para><b>Hot path.</b> <see cref="Rent"/>: a range check, the owner object, the domain's <c>Malloc</c>.
/// Dispose: one atomic operation and the domain's <c>Free</c>. No lock, no LINQ, no closure.</para>
/// </remarks>
public sealed unsafe class RuntimeMemoryPool : MemoryPool<byte>
{
    /// <summary>The size <c>Rent(-1)</c> (the default argument) gives: 4,096 bytes, a page, as
    /// <c>System.IO.Pipelines</c>' default segment size.</summary>
    public const int DefaultBufferSize = 4096;

    private readonly MemoryDomain _domain;

    /// <summary>The domain's shared pool (from <c>AsMemoryPool()</c>), which ignores Dispose.</summary>
    private readonly bool _shared;

    private volatile bool _disposed;

    /// <summary>A pool over <paramref name="domain"/>. Prefer <c>domain.AsMemoryPool()</c>, which shares one per domain.</summary>
    public RuntimeMemoryPool(MemoryDomain domain)
        : this(domain, shared: false)
    {
    }

    /// <summary>A pool over the <c>obj</c> domain of <paramref name="memory"/> (the constructor dependency injection uses).</summary>
    public RuntimeMemoryPool(IRuntimeMemory memory)
        : this((memory ?? throw new ArgumentNullException(nameof(memory))).Obj, shared: false)
    {
    }

    internal RuntimeMemoryPool(MemoryDomain domain, bool shared)
    {
        ArgumentNullException.ThrowIfNull(domain);
        _domain = domain;
        _shared = shared;
    }

    /// <summary>The domain every buffer of this pool is allocated in.</summary>
    public MemoryDomain Domain => _domain;

    /// <summary>The largest buffer <see cref="Rent"/> gives: <see cref="int.MaxValue"/> bytes, the most a
    /// <see cref="Memory{T}"/> can span (the domain's budget or allocator may refuse less).</summary>
    public override int MaxBufferSize => int.MaxValue;

    /// <summary>
    /// Rents a buffer of exactly <paramref name="minBufferSize"/> bytes (<see cref="DefaultBufferSize"/> for -1) from the
    /// domain. Dispose the returned owner to free it.
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="minBufferSize"/> is below -1.</exception>
    /// <exception cref="InsufficientMemoryException">The domain's budget (<see cref="MemoryDomain.MaxBytes"/>) refused the
    /// block; the message names the domain, the budget and the live bytes. (It derives from <see cref="OutOfMemoryException"/>.)</exception>
    /// <exception cref="OutOfMemoryException">The domain's allocator returned null.</exception>
    /// <exception cref="ObjectDisposedException">The runtime that owns the domain, or this pool (made with <c>new</c>), is disposed.</exception>
    public override IMemoryOwner<byte> Rent(int minBufferSize = -1)
    {
        if (minBufferSize == -1)
        {
            minBufferSize = DefaultBufferSize;
        }
        else if (minBufferSize < 0)
        {
            BufferFailures.ThrowBadSize(minBufferSize);
        }

        if (_disposed)
        {
            BufferFailures.ThrowPoolDisposed(_domain);
        }

        var owner = new NativeBlockOwner(_domain, minBufferSize);
        void* block = _domain.Malloc((nuint)minBufferSize);
        if (block == null)
        {
            BufferFailures.ThrowRefused(_domain, (nuint)minBufferSize, "a pool buffer");
        }

        owner.Attach(block);
        return owner;
    }

    /// <summary>Makes this pool refuse further rentals (the shared pool of <c>AsMemoryPool()</c> ignores it). Buffers
    /// already rented are untouched: each is freed by its own Dispose.</summary>
    protected override void Dispose(bool disposing)
    {
        if (!_shared)
        {
            _disposed = true;
        }
    }

    /// <inheritdoc/>
    public override string ToString() => $"{nameof(RuntimeMemoryPool)} over the {_domain.Name} domain";
}
