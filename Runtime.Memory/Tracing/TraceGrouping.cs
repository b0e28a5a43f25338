using System.Globalization;
using System.Text.RegularExpressions;

namespace Runtime.Memory.Tracing;

/// <summary>How statistics group traces (tracemalloc's <c>key_type</c>).</summary>
public enum TraceGrouping
{
    /// <summary>By the file of the most recent frame (<c>'filename'</c>).</summary>
    File,

    /// <summary>By file and line of the most recent frame (<c>'lineno'</c>).</summary>
    Line,

    /// <summary>By the whole traceback (<c>'traceback'</c>).</summary>
    Traceback,
}
