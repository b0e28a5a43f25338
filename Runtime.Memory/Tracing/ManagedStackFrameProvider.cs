using System.Diagnostics;

namespace Runtime.Memory.Tracing;

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
