namespace Runtime.Memory.Tracing;

/// <summary>
/// One frame of an allocation's traceback: the script (or source) file, the line and, when the interpreter knows it,
/// the function. Printed <c>file:line</c>, as tracemalloc prints a frame.
/// </summary>
/// <param name="File">The file name as the interpreter reports it; <c>&lt;unknown&gt;</c> when nothing is known.</param>
/// <param name="Line">The 1-based line, or 0 when unknown.</param>
/// <param name="Function">The function, when known.</param>
public readonly record struct Frame(string File, int Line, string? Function = null)
{
    /// <summary>The frame of an allocation whose caller could not be told (tracemalloc's <c>&lt;unknown&gt;:0</c>).</summary>
    public static readonly Frame Unknown = new("<unknown>", 0);

    /// <inheritdoc/>
    public override string ToString() => $"{File}:{Line}";
}
