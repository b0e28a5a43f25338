using System.Diagnostics;

namespace Runtime.Memory.Tracing;

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
