using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>Return codes of the table's <c>int</c> functions (<c>RTMEM_OK</c> … in <c>runtime_mem.h</c>).</summary>
public static class RtMemStatus
{
    /// <summary>Done.</summary>
    public const int Ok = 0;

    /// <summary>A null pointer, an incomplete struct, or a domain outside 0..2.</summary>
    public const int InvalidArgument = -1;

    /// <summary>Refused: the domain has live blocks that only its current allocator can free.</summary>
    public const int Busy = -2;

    /// <summary>The domain's base allocator is not the small-object allocator (arena functions), or the hook is not installed.</summary>
    public const int NotSupported = -3;

    /// <summary>The runtime failed unexpectedly; nothing changed.</summary>
    public const int Fault = -4;

    /// <summary>Tracing could not store the trace.</summary>
    public const int NoMemory = -5;

    /// <summary>The runtime is not tracing allocations.</summary>
    public const int NotTracing = -6;
}
