namespace Runtime.Memory.Allocators;

/// <summary>
/// An allocator that wraps the allocator it finds (PEP 445, use case 3): tracing, limits, debug guard bytes,
/// fault injection. By default every call is forwarded to <see cref="Inner"/>.
/// </summary>
/// <remarks>
/// <para>
/// Install a hook with <see cref="MemoryDomain.InstallHook"/>, which binds <see cref="Inner"/> to the domain's
/// current allocator, or build it over an allocator yourself and pass it to <see cref="MemoryDomain.SetAllocator"/>
/// (the PEP 445 get / wrap / set sequence). <see cref="MemoryDomain.RemoveHook"/> unlinks it and restores exactly
/// what was below it. One hook instance sits in at most one domain at a time.
/// </para>
/// <para>
/// A hook that changes where blocks start or how big they are underneath (guard bytes, headers) must say so in
/// <see cref="ChangesBlockLayout"/>: the domain then refuses to remove it while the domain has live blocks,
/// because those blocks could not be freed correctly without it. Installing is always allowed, so such a hook may
/// be handed blocks that were allocated before it was installed: it must recognise them and pass them to
/// <see cref="Inner"/> unchanged.
/// </para>
/// </remarks>
public abstract unsafe class MemoryHook : MemoryAllocator
{
    private volatile MemoryAllocator? _inner;

    /// <summary>Creates a hook that is bound when it is installed in a domain.</summary>
    protected MemoryHook()
    {
    }

    /// <summary>Creates a hook that already wraps <paramref name="inner"/> (PEP 445's get / wrap / set).</summary>
    protected MemoryHook(MemoryAllocator inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        _inner = inner;
    }

    /// <summary>The allocator this hook wraps.</summary>
    /// <exception cref="InvalidOperationException">The hook is not bound to an allocator yet.</exception>
    public MemoryAllocator Inner => _inner ?? ThrowNotBound();

    /// <summary>Whether the hook is bound to an allocator.</summary>
    public bool IsBound => _inner is not null;

    private MemoryDomain? _domain;

    /// <summary>The domain this hook is installed in, if any.</summary>
    public MemoryDomain? Domain => Volatile.Read(ref _domain);

    /// <summary>
    /// Atomically marks the hook as installed in <paramref name="domain"/>; false when another domain holds it.
    /// Claiming is what keeps one instance out of two domains even when both install it at the same moment.
    /// </summary>
    internal bool TryClaim(MemoryDomain domain)
    {
        MemoryDomain? previous = Interlocked.CompareExchange(ref _domain, domain, null);
        return previous is null || ReferenceEquals(previous, domain);
    }

    /// <summary>Marks the hook as no longer installed in <paramref name="domain"/>.</summary>
    internal void Release(MemoryDomain domain) => Interlocked.CompareExchange(ref _domain, null, domain);

    /// <summary>
    /// Whether blocks allocated through this hook cannot be freed by the allocator below it
    /// (for example because the hook adds a header). Such a hook cannot be removed while its domain has live blocks.
    /// </summary>
    public virtual bool ChangesBlockLayout => false;

    /// <summary>Called by the domain when the hook is linked into its chain.</summary>
    internal void Bind(MemoryAllocator inner) => _inner = inner;

    /// <summary>The inner allocator, or <see langword="null"/> when unbound (for chain walks).</summary>
    internal MemoryAllocator? InnerOrNull => _inner;

    /// <inheritdoc/>
    public override void* Malloc(nuint size) => Inner.Malloc(size);

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size) => Inner.Calloc(count, size);

    /// <inheritdoc/>
    public override void* Realloc(void* ptr, nuint newSize) => Inner.Realloc(ptr, newSize);

    /// <inheritdoc/>
    public override void Free(void* ptr) => Inner.Free(ptr);

    /// <inheritdoc/>
    public override nuint BlockSize(void* ptr) => Inner.BlockSize(ptr);

    private MemoryAllocator ThrowNotBound() =>
        throw new InvalidOperationException(
            $"Hook '{Name}' is not bound to an allocator: install it with MemoryDomain.InstallHook, or construct it over an allocator.");
}
