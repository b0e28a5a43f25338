using Runtime.Memory.Allocators;

namespace Runtime.Memory.Testing;

/// <summary>One call seen by a <see cref="RecordingAllocator"/>, with its arguments and result.</summary>
/// <param name="Sequence">1-based position of the call among all calls the recorder saw.</param>
/// <param name="Operation">Which method.</param>
/// <param name="Pointer">The pointer argument of realloc and free; zero otherwise.</param>
/// <param name="Count">The element count of calloc; zero otherwise.</param>
/// <param name="Size">The size argument (calloc: the element size); zero for free.</param>
/// <param name="Result">The pointer returned (zero for a failure and for free).</param>
/// <param name="ThreadId">The managed id of the calling thread.</param>
public readonly record struct RecordedCall(
    long Sequence,
    AllocatorOperation Operation,
    nint Pointer,
    nuint Count,
    nuint Size,
    nint Result,
    int ThreadId);
