using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;

namespace Runtime.Memory.Buffers;

/// <summary>The exceptions of the safe buffers: thrown out of line, so that the rent and allocate paths stay small.</summary>
internal static class BufferFailures
{
    /// <summary>
    /// A domain answered null to <paramref name="size"/> bytes for <paramref name="what"/>: the runtime is disposed
    /// (<see cref="ObjectDisposedException"/>), the budget refused it (<see cref="InsufficientMemoryException"/>), or the
    /// allocator had no memory (<see cref="OutOfMemoryException"/>). Which one is read after the fact, on this cold path:
    /// a budget is blamed when the block would not fit under it at the moment of the read.
    /// </summary>
    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowRefused(MemoryDomain domain, nuint size, string what)
    {
        if (domain.IsClosed)
        {
            throw new ObjectDisposedException($"{domain.Name} domain",
                $"Cannot allocate {what} of {Bytes(size)}: the runtime that owns the {domain.Name} domain has been disposed.");
        }

        if (domain.MaxBytes is long budget)
        {
            long live = domain.LiveBytes;
            string figures = $"budget MaxBytes = {Bytes((nuint)budget)}, {Bytes((nuint)Math.Max(live, 0))} live";
            if ((ulong)size > (ulong)(budget - Math.Min(live, budget)))
            {
                throw new InsufficientMemoryException(
                    $"The {domain.Name} domain's budget refused {what} of {Bytes(size)} ({figures}). Dispose buffers no longer needed or raise the budget (MemoryDomain.MaxBytes, RuntimeMemory:Limits:{Capitalized(domain.Name)}:MaxBytes).");
            }

            throw new OutOfMemoryException($"The {domain.Name} domain could not allocate {what} of {Bytes(size)}: its allocator returned null ({figures}).");
        }

        throw new OutOfMemoryException($"The {domain.Name} domain could not allocate {what} of {Bytes(size)}: its allocator returned null (no budget is set).");
    }

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowBadSize(int size) =>
        throw new ArgumentOutOfRangeException("minBufferSize", size, "A buffer size is -1 (the default size) or 0 and above.");

    [DoesNotReturn]
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal static void ThrowPoolDisposed(MemoryDomain domain) =>
        throw new ObjectDisposedException(nameof(RuntimeMemoryPool), $"This pool over the {domain.Name} domain has been disposed: it rents no more buffers.");

    private static string Bytes(nuint size) => string.Create(CultureInfo.InvariantCulture, $"{size:N0} bytes");

    private static string Capitalized(string name) => char.ToUpperInvariant(name[0]) + name[1..];
}
