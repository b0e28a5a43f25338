using Runtime.Memory.Allocators;

namespace Runtime.Memory.Samples;

/// <summary>
/// A user-written hook: counts allocation requests by power-of-two size class, then forwards each call to the
/// allocator it wraps. Thread-safe (one Interlocked increment per request: fine for a diagnostic hook).
/// </summary>
public sealed unsafe class SizeHistogramHook : MemoryHook
{
    private readonly long[] _counts = new long[64];

    public override string Name => "size-histogram";

    public override void* Malloc(nuint size)
    {
        Count(size);
        return Inner.Malloc(size);
    }

    public override void* Calloc(nuint count, nuint size)
    {
        Count(count * size); // the domain has already refused products that overflow
        return Inner.Calloc(count, size);
    }

    public override void* Realloc(void* ptr, nuint newSize)
    {
        Count(newSize);
        return Inner.Realloc(ptr, newSize);
    }

    /// <summary>(upper bound of the class, requests) for every class that saw a request.</summary>
    public IEnumerable<(ulong UpTo, long Count)> Buckets()
    {
        for (int i = 0; i < _counts.Length; i++)
        {
            long n = Volatile.Read(ref _counts[i]);
            if (n > 0)
            {
                yield return (i == 0 ? 0UL : 1UL << (i - 1), n);
            }
        }
    }

    private void Count(nuint size)
    {
        // class 0 holds size 0; class i holds sizes in (2^(i-2), 2^(i-1)]
        int bucket = size == 0 ? 0 : 1 + (64 - System.Numerics.BitOperations.LeadingZeroCount((ulong)size - 1));
        Interlocked.Increment(ref _counts[Math.Min(bucket, _counts.Length - 1)]);
    }
}
