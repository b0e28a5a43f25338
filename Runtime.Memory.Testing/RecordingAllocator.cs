using Runtime.Memory.Allocators;

namespace Runtime.Memory.Testing;

/// <summary>
/// A hook that records every call passing through it, then forwards it. Install it in a domain
/// (<see cref="MemoryDomain.InstallHook"/>), or build it over an allocator and use it as a base allocator.
/// Thread-safe; the record is in the order the calls completed (a free is recorded as it starts, so an address is
/// always recorded as freed before another thread's malloc can record it again).
/// </summary>
/// <remarks>Test fake: recording takes a lock per call. Block sizes (<see cref="MemoryAllocator.BlockSize"/>) are not recorded.</remarks>
public sealed unsafe class RecordingAllocator : MemoryHook
{
    private readonly List<RecordedCall> _calls = [];
    private readonly Lock _lock = new();

    /// <summary>A recorder bound when it is installed.</summary>
    public RecordingAllocator()
    {
    }

    /// <summary>A recorder over <paramref name="inner"/>.</summary>
    public RecordingAllocator(MemoryAllocator inner)
        : base(inner)
    {
    }

    /// <inheritdoc/>
    public override string Name => "recording";

    /// <summary>How many calls have been recorded.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _calls.Count;
            }
        }
    }

    /// <summary>A copy of the calls recorded so far, optionally clearing the record.</summary>
    public IReadOnlyList<RecordedCall> GetSnapshot(bool clear = false)
    {
        lock (_lock)
        {
            RecordedCall[] copy = [.. _calls];
            if (clear)
            {
                _calls.Clear();
            }

            return copy;
        }
    }

    /// <summary>Forgets the calls recorded so far (sequence numbers carry on).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            _calls.Clear();
        }
    }

    /// <inheritdoc/>
    public override void* Malloc(nuint size)
    {
        void* result = Inner.Malloc(size);
        Record(AllocatorOperation.Malloc, null, 0, size, result);
        return result;
    }

    /// <inheritdoc/>
    public override void* Calloc(nuint count, nuint size)
    {
        void* result = Inner.Calloc(count, size);
        Record(AllocatorOperation.Calloc, null, count, size, result);
        return result;
    }

    /// <inheritdoc/>
    public override void* Realloc(void* ptr, nuint newSize)
    {
        void* result = Inner.Realloc(ptr, newSize);
        Record(AllocatorOperation.Realloc, ptr, 0, newSize, result);
        return result;
    }

    /// <inheritdoc/>
    public override void Free(void* ptr)
    {
        // Recorded before forwarding: once freed, the address may be handed out (and recorded) by another thread.
        Record(AllocatorOperation.Free, ptr, 0, 0, null);
        Inner.Free(ptr);
    }

    private long _sequence;

    private void Record(AllocatorOperation operation, void* ptr, nuint count, nuint size, void* result)
    {
        lock (_lock)
        {
            _calls.Add(new RecordedCall(++_sequence, operation, (nint)ptr, count, size, (nint)result, Environment.CurrentManagedThreadId));
        }
    }
}
