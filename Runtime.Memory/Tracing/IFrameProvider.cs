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

/// <summary>
/// A frame provider an interpreter drives directly: it pushes a frame when a function is entered, updates the line
/// as it runs and pops on return; the tracer reads the thread's stack. No allocation per push after warm-up.
/// </summary>
/// <remarks>
/// The cheapest provider to trace with: every push, line change and pop advances the thread's stack version, and the
/// tracer reuses the thread's last traceback, whatever its depth, while the version is the one it was captured at (one
/// load and a compare, no call); it calls <see cref="GetFrames"/> only when the stack has moved.
/// </remarks>
public sealed class ThreadFrameStack : IFrameProvider
{
    [ThreadStatic]
    private static Stack? t_stack;

    /// <summary>One thread's frames, oldest first (<c>Frames[Depth - 1]</c> is the current one). Written only by its
    /// thread; the tracer reads it on the same thread.</summary>
    /// <remarks>Invariant: any change to <see cref="Frames"/>[0..Depth) or <see cref="Depth"/> advances
    /// <see cref="Version"/> (it starts at 0, only grows and never wraps in practice), so that two equal versions
    /// mean the same frames.</remarks>
    internal sealed class Stack
    {
        public Frame[] Frames = new Frame[16];
        public int Depth;
        public long Version;
    }

    /// <summary>The current thread's stack (created empty on first use).</summary>
    internal static Stack Current => t_stack ??= new Stack();

    /// <summary>Enters a function: pushes its frame on the current thread.</summary>
    public static void Push(string file, int line, string? function = null)
    {
        Stack s = Current;
        if (s.Depth == s.Frames.Length)
        {
            Array.Resize(ref s.Frames, s.Frames.Length * 2);
        }

        s.Frames[s.Depth++] = new Frame(file, line, function);
        s.Version++;
    }

    /// <summary>Moves the current frame to <paramref name="line"/>.</summary>
    public static void SetLine(int line)
    {
        Stack s = Current;
        if (s.Depth > 0)
        {
            ref Frame top = ref s.Frames[s.Depth - 1];
            top = top with { Line = line };
            s.Version++;
        }
    }

    /// <summary>Leaves the current function.</summary>
    public static void Pop()
    {
        Stack s = Current;
        if (s.Depth > 0)
        {
            s.Frames[--s.Depth] = default;
            s.Version++;
        }
    }

    /// <inheritdoc/>
    public int GetFrames(Span<Frame> frames, out int totalFrames)
    {
        Stack? s = t_stack;
        if (s is null || s.Depth == 0)
        {
            totalFrames = 0;
            return 0;
        }

        // O(frames kept): the depth is a field, so the total is exact at any depth; it is capped as the contract says,
        // so that the same frames at different great depths make one traceback.
        totalFrames = (int)Math.Min(s.Depth, (long)frames.Length + IFrameProvider.Lookahead + 1);
        int n = Math.Min(frames.Length, s.Depth);
        for (int i = 0; i < n; i++)
        {
            frames[i] = s.Frames[s.Depth - 1 - i];
        }

        return n;
    }
}

/// <summary>
/// The default provider for managed callers: the .NET stack of the allocating thread, above the runtime's own frames
/// (file and line where the PDB has them, else the method). Exact but slow (a stack walk per traced allocation, some
/// microseconds): for finding where C# code allocates, not for production; interpreters provide their own.
/// </summary>
/// <remarks>
/// <para><b>Not bounded by the frames kept: its cost grows with the depth of the .NET stack.</b> .NET has no API that
/// walks only the top n frames: <c>new StackTrace(skip, …)</c> captures the whole stack, and so does
/// <c>new StackFrame(skip, …)</c> (it builds the same whole-stack capture and keeps one frame); with file information
/// both also look up the source line of every frame captured, not only of the frames kept (the measured costs at
/// depths 10, 1,000 and 10,000 are in <c>docs/BENCHMARKS.md</c>). So this provider keeps the whole-stack capture
/// with file information (the only one that gives file and line), and bounds what it does with it: it reads at most
/// the frames kept plus <see cref="IFrameProvider.Lookahead"/> of them and reports a deeper stack's total as a lower
/// bound, as the contract says. For deep managed stacks, push frames with <see cref="ThreadFrameStack"/> instead.</para>
/// </remarks>
public sealed class ManagedStackFrameProvider : IFrameProvider
{
    private static readonly string OwnNamespace = typeof(MemoryDomain).Namespace!;

    /// <inheritdoc/>
    public int GetFrames(Span<Frame> frames, out int totalFrames)
    {
        var trace = new StackTrace(1, fNeedFileInfo: true); // the whole stack: .NET offers no bounded walk (see remarks)
        int written = 0;
        totalFrames = 0;
        int limit = frames.Length + IFrameProvider.Lookahead;
        foreach (StackFrame frame in trace.GetFrames())
        {
            if (totalFrames == limit && written > 0)
            {
                totalFrames = limit + 1; // deeper than the provider looks: "at least limit + 1"
                break;
            }

            // DiagnosticMethodInfo rather than GetMethod(): it keeps the method's and its type's names under trimming
            // and NativeAOT. DeclaringTypeName is the type's full name (namespace included, nested types after '+').
            var method = DiagnosticMethodInfo.Create(frame);
            string? typeName = method?.DeclaringTypeName;
            if (totalFrames == 0 && written == 0 && typeName is not null && typeName.StartsWith(OwnNamespace + ".", StringComparison.Ordinal)
                && !typeName.StartsWith(OwnNamespace + ".Tests.", StringComparison.Ordinal))
            {
                continue; // the runtime's own frames: the domain, the hooks, the tracer
            }

            totalFrames++;
            if (written < frames.Length)
            {
                string function = method is null ? "?" : $"{SimpleName(typeName)}.{method.Name}";
                frames[written++] = frame.GetFileName() is { } file
                    ? new Frame(file, frame.GetFileLineNumber(), function)
                    : new Frame(typeName ?? "<unknown>", 0, function);
            }
        }

        return written;
    }

    /// <summary>A type's name without its namespace or enclosing types, as <c>Type.Name</c> gives it.</summary>
    private static string? SimpleName(string? fullName) =>
        fullName?[(fullName.LastIndexOfAny(['.', '+']) + 1)..];
}
