using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Extensions;

/// <summary>
/// Routes one native library's allocations into a domain of a runtime and accounts them under the library's tag.
/// The library-specific adapters (<see cref="Zlib.ZlibRouting"/>, …) hand the library callbacks that land here.
/// </summary>
/// <remarks>
/// <code>
/// Every routed block carries a 16-byte prefix, so that frees and size queries (SQLite's xSize) are O(1) and exact:
///
///   domain block                 returned to the library (16-byte aligned, as every domain block)
///   |                            |
///   [ size (8) | tag check (8) ][ size bytes ...... ]
/// </code>
/// <para>The check word (the route's GCHandle, xor a constant) catches a block freed through the wrong
/// route in debug builds. Nothing here throws: the library sees null on failure, and the entry points that call these
/// methods catch everything (<see cref="NativeCallScope"/>).</para>
/// </remarks>
public abstract unsafe class LibraryRoute : IDisposable
{
    /// <summary>Bytes in front of every routed block.</summary>
    public const int PrefixSize = 16;

    private GCHandle _self;

    /// <summary>A route into <paramref name="domain"/> of <paramref name="runtime"/>, accounted under <paramref name="tag"/>.</summary>
    protected LibraryRoute(RuntimeMemory runtime, MemoryDomainKind domain, string tag)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        ArgumentException.ThrowIfNullOrWhiteSpace(tag);
        Runtime = runtime;
        Domain = runtime[domain];
        Account = runtime.Tag(tag);
        _self = GCHandle.Alloc(this);
    }

    /// <summary>The runtime the route allocates in.</summary>
    private protected RuntimeMemory Runtime { get; }

    /// <summary>The domain the library's memory comes from.</summary>
    public MemoryDomain Domain { get; }

    /// <summary>What the library holds, under its tag.</summary>
    public LibraryAccount Account { get; }

    /// <summary>The <c>opaque</c> / <c>ud</c> / <c>pAppData</c> pointer the library passes back to its callbacks.</summary>
    protected void* Handle => (void*)GCHandle.ToIntPtr(_self);

    /// <summary>The route behind a callback's context pointer.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    protected static T FromHandle<T>(void* handle)
        where T : LibraryRoute => Unsafe.As<T>(GCHandle.FromIntPtr((nint)handle).Target!);

    /// <summary>
    /// Allocates <paramref name="size"/> bytes for the library (zeroed when asked); null on failure, on overflow, or when
    /// the tag's budget (<see cref="LibraryAccount.MaxBytes"/>) would be passed.
    /// </summary>
    public void* Allocate(nuint size, bool zeroed = false)
    {
        if (size > MemoryDomain.MaxRequestSize - PrefixSize)
        {
            Account.OnFailed();
            return null;
        }

        byte* block = (byte*)(zeroed ? Domain.Calloc(1, size + PrefixSize) : Domain.Malloc(size + PrefixSize));
        if (block == null)
        {
            Account.OnFailed();
            return null;
        }

        if (!Account.Admit(Account.Context(), size))
        {
            Domain.Free(block); // the tag's budget refused it (counted and logged by the account)
            return null;
        }

        *(nuint*)block = size;
        *(nuint*)(block + sizeof(nuint)) = Check;
        return block + PrefixSize;
    }

    /// <summary>
    /// Resizes a routed block (C <c>realloc</c> rules: null is malloc); null on failure or when the growth would pass the
    /// tag's budget, the old block intact. A shrink is never refused by the budget.
    /// </summary>
    public void* Reallocate(void* ptr, nuint size)
    {
        if (ptr == null)
        {
            return Allocate(size);
        }

        if (size > MemoryDomain.MaxRequestSize - PrefixSize)
        {
            Account.OnFailed();
            return null;
        }

        byte* block = (byte*)ptr - PrefixSize;
        nuint old = *(nuint*)block;
        if (!Account.ReserveResize(old, size, out long reserved))
        {
            return null; // counted and logged by the account
        }

        byte* moved = (byte*)Domain.Realloc(block, size + PrefixSize);
        if (moved == null)
        {
            Account.ResizeFailed(reserved);
            return null;
        }

        *(nuint*)moved = size;
        Account.Resized(Account.Context(), old, size, reserved);
        return moved + PrefixSize;
    }

    /// <summary>Frees a routed block; null does nothing.</summary>
    public void Release(void* ptr)
    {
        if (ptr == null)
        {
            return;
        }

        byte* block = (byte*)ptr - PrefixSize;
        System.Diagnostics.Debug.Assert(*(nuint*)(block + sizeof(nuint)) == Check, "a block freed through a route that did not allocate it");
        ReleaseBlock(block);
    }

    /// <summary>
    /// Frees a routed block by its domain address (the prefix), whose check word may already be reused (OpenSSL's
    /// deferred frees link blocks through it); only the size is read.
    /// </summary>
    private protected void ReleaseBlock(byte* block)
    {
        Account.Freed(Account.Context(), *(nuint*)block);
        Domain.Free(block);
    }

    /// <summary>The size the library asked for, of a live routed block (O(1)).</summary>
    public static nuint SizeOf(void* ptr) => ptr == null ? 0 : *(nuint*)((byte*)ptr - PrefixSize);

    /// <summary>
    /// The check word of this route's live blocks. Its low three bits are 101 (100 for a pinned handle): a handle is
    /// 8-byte aligned. So it never equals the C library mark of native/openssl_route.c (low bits 110) nor a 16-byte
    /// aligned list link.
    /// </summary>
    private nuint Check => (nuint)GCHandle.ToIntPtr(_self) ^ unchecked((nuint)0x5A5A_A5A5_5A5A_A5A5UL);

    /// <summary>
    /// Releases the route's handle. The library must hold no routed block any more and must not call the callbacks
    /// again (end its streams, close its databases, close its states first).
    /// </summary>
    public void Dispose()
    {
        OnDispose();
        if (_self.IsAllocated)
        {
            _self.Free();
        }

        GC.SuppressFinalize(this);
    }

    /// <summary>What a route undoes before its handle is released (SQLite's puts the previous allocator back).</summary>
    protected virtual void OnDispose()
    {
    }
}
