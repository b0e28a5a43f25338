using Runtime.Memory.Threading;

namespace Runtime.Memory.Accounting;

/// <summary>
/// The runtime's managed record of one thread that has used it: the thread (to find out when it has ended), its
/// <see cref="ThreadContext"/> (the unmanaged block the fast path uses: counters, heaps, calls in flight), and the
/// tracer's per-thread state, which holds managed references and so cannot live in the context. Reached from the
/// context through a weak handle (<see cref="Of"/>), by the traced paths only.
/// </summary>
internal sealed unsafe class ThreadShard(Thread thread, ThreadContext* context)
{
    /// <summary>The thread; once it has ended the context's counters are folded into the retired totals.</summary>
    public readonly Thread Thread = thread;

    /// <summary>The thread's context of this runtime; null once the runtime has let go of it.</summary>
    public ThreadContext* Context = context;

    /// <summary>The shard of <paramref name="context"/>.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    public static ThreadShard Of(ThreadContext* context) =>
        System.Runtime.CompilerServices.Unsafe.As<ThreadShard>(System.Runtime.InteropServices.GCHandle.FromIntPtr(context->Shard).Target!);

    /// <summary>
    /// The tracer's state of this shard's thread (<see cref="Tracing.TraceThread.Current"/>), cached here on first use so
    /// that a traced call on the domain's fast path costs no thread-static lookup beyond the shard's own.
    /// </summary>
    public Tracing.TraceThread? Tracing;

    /// <summary>The tracer's sampler on this thread: bytes until the next sample (read by the domains' inlined malloc),
    /// and the session the countdown was drawn for (null: none yet).</summary>
    public long BytesUntilSample;

    public object? SamplerSession;

    /// <summary>
    /// This thread's traced bytes not yet published to <see cref="TraceEpoch"/> (the tracer's epoch they count for),
    /// as <see cref="DomainCounters.PendingLive"/> is for the accounting: only this thread writes them.
    /// </summary>
    public long TracePending;

    /// <summary>The tracer epoch <see cref="TracePending"/> counts for; null before the thread's first traced call.</summary>
    public volatile Tracing.TraceEpoch? TraceEpoch;

    /// <summary>
    /// The tracer's one-pool cache on this thread: the shadow words of the dense slots of the pool at
    /// <see cref="TracePool"/> in the shadow of the table whose epoch is <see cref="TracePoolEpoch"/> (word i: the
    /// pool's block i), so that a thread that allocates and frees in one pool finds a block's trace word without walking
    /// the shadow's radix. Owner thread only; valid while that table's shadow lives (its chunks stay mapped until the
    /// tracer is disposed).
    /// </summary>
    /// <remarks>Invariant: <see cref="TracePoolEpoch"/>, when set, is <see cref="TraceEpoch"/> (it is set after the
    /// shard adopts the epoch, and <see cref="AdoptTraceEpoch"/> clears it), so one compare of it with the table's
    /// current epoch says both that the words are that table's and that the pending bytes count for that epoch.</remarks>
    public nuint TracePool;

    public unsafe ulong* TracePoolWords;

    public Tracing.TraceEpoch? TracePoolEpoch;

    /// <summary>Publishes the pending traced bytes to their epoch (one atomic add) and starts counting for
    /// <paramref name="epoch"/>. Cold: on a thread's first traced call of an epoch.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    public void AdoptTraceEpoch(Tracing.TraceEpoch epoch)
    {
        TracePoolEpoch = null; // the cache is keyed by the epoch the pending bytes count for
        PublishTracePending();
        TraceEpoch = null; // a reader summing meanwhile skips this shard rather than count the old bytes for the new epoch
        TracePending = 0;
        TraceEpoch = epoch;
    }

    /// <summary>Moves the pending traced bytes into their epoch's published sum (one atomic add).</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    public void PublishTracePending()
    {
        if (TraceEpoch is { } epoch && TracePending != 0)
        {
            Interlocked.Add(ref epoch.Published, TracePending);
        }

        TracePending = 0;
    }
}

