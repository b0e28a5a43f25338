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
