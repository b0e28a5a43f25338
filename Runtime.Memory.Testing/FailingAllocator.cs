using Runtime.Memory.Allocators;

namespace Runtime.Memory.Testing;

/// <summary>
/// A hook that makes chosen allocation requests fail with a null return, as CPython's <c>_testcapi.set_nomemory</c>
/// does: requests are numbered from 1 in the order they arrive (malloc, calloc and realloc each count as one),
/// and those in the failing window return null without reaching the allocator below. Frees always go through.
/// </summary>
/// <remarks>
/// Starts with no window (nothing fails). Thread-safe: numbering is atomic, so with several threads each request
/// number is still used exactly once.
/// </remarks>
public sealed unsafe class FailingAllocator : MemoryHook
{
    private long _requests;
    private long _failures;

    /// <summary>The failing window, replaced as a whole so a request never sees half an update.</summary>
    private volatile Window _window = Window.None;

    private sealed record Window(long First, long Last)
    {
        public static readonly Window None = new(long.MaxValue, long.MaxValue);
    }

    /// <summary>A fault injector bound when it is installed.</summary>
    public FailingAllocator()
    {
    }

    /// <summary>A fault injector over <paramref name="inner"/>.</summary>
    public FailingAllocator(MemoryAllocator inner)
        : base(inner)
    {
    }

    /// <inheritdoc/>
    public override string Name => "failing";

    /// <summary>Allocation requests seen so far.</summary>
    public long Requests => Volatile.Read(ref _requests);

    /// <summary>Requests this hook made fail.</summary>
    public long Failures => Volatile.Read(ref _failures);

    /// <summary>Requests number <paramref name="first"/> through <paramref name="last"/> (1-based, inclusive) fail.</summary>
    public FailingAllocator FailBetween(long first, long last)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(first, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(last, first);
        _window = new Window(first, last);
        return this;
    }

    /// <summary>Request number <paramref name="first"/> (1-based) and every later one fail.</summary>
    public FailingAllocator FailFrom(long first) => FailBetween(first, long.MaxValue);

    /// <summary>Only request number <paramref name="n"/> (1-based) fails.</summary>
    public FailingAllocator FailOnly(long n) => FailBetween(n, n);

    /// <summary>Nothing fails any more.</summary>
    public FailingAllocator FailNever()
    {
        _window = Window.None;
        return this;
    }

    /// <summary>Numbers requests from 1 again and clears the failure count; the window stays.</summary>
    public FailingAllocator ResetCount()
    {
        Volatile.Write(ref _requests, 0);
        Volatile.Write(ref _failures, 0);
        return this;
    }

    /// <inheritdoc/>
    public override void* Malloc(nuint size) => ShouldFail() ? null : Inner.Malloc(size);

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size) => ShouldFail() ? null : Inner.Calloc(count, size);

    /// <inheritdoc/>
    public override void* Realloc(void* ptr, nuint newSize) => ShouldFail() ? null : Inner.Realloc(ptr, newSize);

    private bool ShouldFail()
    {
        long n = Interlocked.Increment(ref _requests);
        Window window = _window;
        if (n >= window.First && n <= window.Last)
        {
            Interlocked.Increment(ref _failures);
            return true;
        }

        return false;
    }
}
