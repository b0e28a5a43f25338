namespace Runtime.Memory.Tracing;

/// <summary>
/// The traced-memory counters of one epoch of a <see cref="TraceTable"/> (from a session's start, or its last clear, to
/// the next clear or its stop): the generation its shadow words carry, the bytes threads have published, the peak.
/// </summary>
/// <remarks>Written: <see cref="Published"/> by atomic adds (a thread publishing its pending bytes, or the
/// accounting folding an ended thread's), <see cref="Peak"/> by an atomic raise on any thread or by
/// <see cref="TraceTable.ResetPeak"/>; <see cref="GenerationBits"/> never. Read by every traced call of the table
/// whose current epoch it is.</remarks>
internal sealed class TraceEpoch(ulong generationBits)
{
    /// <summary>The present bit and the generation, as in the top byte of this epoch's shadow words.</summary>
    public readonly ulong GenerationBits = generationBits;

    /// <summary>Traced bytes the threads have published (each thread's pending bytes are in its shard).</summary>
    public long Published;

    /// <summary>The most the traced bytes have been, as the threads' estimates saw it.</summary>
    public long Peak;
}
