using System.Runtime.InteropServices;

namespace Runtime.Memory.Extensions.Zlib;

/// <summary>
/// Routes zlib's allocations into a domain (by default <c>raw</c>, where CPython's zlib module puts them since
/// bpo-18227) and accounts them under a tag (by default <c>zlib</c>). Set a stream's <c>zalloc</c>, <c>zfree</c> and
/// <c>opaque</c> with <see cref="Attach"/> before its init function, as zlib requires.
/// </summary>
/// <remarks>
/// zlib calls <c>zalloc(opaque, items, size)</c> a few times per stream at init (deflate: the state, the window, the
/// hash chains, the pending buffer; never a realloc) and <c>zfree</c> at end. The callbacks are thread-safe, never
/// throw, and return null for an <c>items × size</c> that does not fit, which zlib reports as <c>Z_MEM_ERROR</c>.
/// </remarks>
public sealed unsafe class ZlibRouting : LibraryRoute
{
    /// <summary>A route into <paramref name="domain"/> of <paramref name="runtime"/>, accounted under <paramref name="tag"/>.</summary>
    public ZlibRouting(IRuntimeMemory runtime, MemoryDomainKind domain = MemoryDomainKind.Raw, string tag = "zlib")
        : base(RuntimeMemory.Of(runtime), domain, tag)
    {
    }

    /// <summary>Sets <paramref name="stream"/>'s <c>zalloc</c>, <c>zfree</c> and <c>opaque</c> to this route.</summary>
    public void Attach(ZStream* stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        stream->ZAlloc = &ZAlloc;
        stream->ZFree = &ZFree;
        stream->Opaque = Handle;
    }

    [UnmanagedCallersOnly]
    private static void* ZAlloc(void* opaque, uint items, uint size)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            ZlibRouting route = FromHandle<ZlibRouting>(opaque);
            ulong total = (ulong)items * size; // exact: two 32-bit factors
            if (total > MemoryDomain.MaxRequestSize)
            {
                route.Account.OnFailed();
                return null;
            }

            return route.Allocate((nuint)total);
        }
        catch (Exception ex)
        {
            return Interop.NativeFaults.Swallow(ex);
        }
    }

    [UnmanagedCallersOnly]
    private static void ZFree(void* opaque, void* address)
    {
        using NativeCallScope scope = NativeCallScope.Enter();
        try
        {
            FromHandle<ZlibRouting>(opaque).Release(address);
        }
        catch (Exception ex)
        {
            Interop.NativeFaults.Swallow(ex);
        }
    }
}
