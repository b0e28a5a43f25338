using System.Globalization;
using System.Text;

namespace Runtime.Memory.Debugging;

/// <summary>The call in which a violation was found.</summary>
public enum MemoryOperation
{
    /// <summary>Free.</summary>
    Free,

    /// <summary>Realloc.</summary>
    Realloc,

    /// <summary>Malloc.</summary>
    Malloc,

    /// <summary>Calloc.</summary>
    Calloc,

    /// <summary>A flush of the quarantine of freed blocks (<see cref="MemoryDebugger.FlushQuarantine()"/>, <see cref="RuntimeMemory.Collect"/>, Dispose).</summary>
    Flush,
}
