namespace Runtime.Memory.Accounting;

/// <summary>
/// The counters one thread keeps for one <see cref="MemoryAccounting"/> (one runtime instance).
/// Only <see cref="Thread"/> writes <see cref="Counters"/>; readers sum all shards.
/// </summary>
internal sealed class ThreadShard(MemoryAccounting owner, Thread thread)
{
    /// <summary>The accounting this shard belongs to: the per-thread cache is valid only when it matches.</summary>
    public readonly MemoryAccounting Owner = owner;

    /// <summary>The thread that writes this shard; once it has ended the shard is folded into the retired totals.</summary>
    public readonly Thread Thread = thread;

    /// <summary>Per-domain counters, indexed by <see cref="MemoryDomainKind"/>.</summary>
    public DomainCountersByKind Counters;

    /// <summary>
    /// Front-door calls of this runtime's domains the thread is inside right now (nested calls count each). Written
    /// only by <see cref="Thread"/>, with volatile stores; read by the runtime's Dispose, which waits for it to be 0 on
    /// every thread before it releases anything (see the lifetime notes in <c>MemoryDomain.cs</c>).
    /// </summary>
    public int InCall;

    /// <summary>
    /// Per domain, this thread's registration with the domain's small-object allocator, so that the one thread-static
    /// lookup of the shard serves both the accounting and the allocator. Valid while <see cref="HeapSlot.Allocator"/>
    /// is the domain's allocator; a registration without a heap means this thread has only freed there so far.
    /// </summary>
    public HeapSlotsByKind Heaps;

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

/// <summary>A cached per-thread registration with one small-object allocator (it holds the thread's heap).</summary>
internal struct HeapSlot
{
    public SmallObjectAllocator? Allocator;
    public SmallObjectAllocator.ThreadHeap? Registration;
}

[System.Runtime.CompilerServices.InlineArray(MemoryDomainKindExtensions.Count)]
internal struct HeapSlotsByKind
{
    private HeapSlot _element;
}
