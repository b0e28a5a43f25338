using System.Diagnostics;

namespace Runtime.Memory.Tracing;

/// <summary>
/// Tells the tracer where the current thread is in the embedding interpreter's program: the interpreter implements
/// it (the Lua host reads the Lua call stack), so traces group by script file and line.
/// </summary>
/// <remarks>
/// <para>Called on every traced allocation, on the allocating thread, so it should cost no more than reading the
/// interpreter's current frame. It must not throw and must not allocate through the runtime (a nested allocation is
/// not traced, but it is wasted work). Returning 0 frames records <see cref="Frame.Unknown"/>.</para>
/// <para><b>Bounded by the frames kept, not by the depth.</b> A call examines at most <c>frames.Length</c> +
/// <see cref="Lookahead"/> levels of the stack, plus one to learn whether the stack goes deeper, whatever its depth:
/// a traced allocation 100,000 calls deep costs what it costs 10 calls deep. Levels the provider does not write (a
/// Lua provider's C functions) count against that budget too, so they cannot make the walk unbounded either; such a
/// provider may then write fewer frames than asked.</para>
/// <para><b>The total.</b> <c>totalFrames</c> is the exact depth when the stack has at most
/// <c>frames.Length</c> + <see cref="Lookahead"/> levels. When it has more, the provider stops looking and reports
/// any greater figure (by convention <c>frames.Length + Lookahead + 1</c>); the tracer records it as exactly that
/// figure with <see cref="Traceback.TotalFramesIsLowerBound"/> set ("at least that many", printed <c>N+</c>), so
/// tracebacks of the same frames at different great depths are one traceback, not one per depth. tracemalloc, by
/// comparison, walks every frame and caps its count at 65,535.</para>
/// </remarks>
public interface IFrameProvider
{
    /// <summary>How many levels past the frames asked for a provider examines to count the total depth exactly:
    /// a stack up to <c>frames.Length + Lookahead</c> deep gets an exact <see cref="Traceback.TotalFrames"/>.</summary>
    const int Lookahead = 16;

    /// <summary>
    /// Writes up to <c>frames.Length</c> frames of the current thread's stack into <paramref name="frames"/>, most recent
    /// first, and returns how many it wrote. <paramref name="totalFrames"/> is the depth of the stack (at least the
    /// count) when it is at most <c>frames.Length</c> + <see cref="Lookahead"/>; otherwise any greater figure, meaning
    /// "deeper than that" (the provider need not look further).
    /// </summary>
    int GetFrames(Span<Frame> frames, out int totalFrames);
}
