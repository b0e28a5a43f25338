using Runtime.Memory.Accounting;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The tracer's hook on one domain (tracemalloc's hooks, PEP 445 use case 3): forwards every call to the allocator
/// below it and records the block's trace, in exact or sampling mode. It never changes a block, so it can be removed
/// with blocks live (<see cref="MemoryTracer.Stop"/>).
/// </summary>
/// <remarks>
/// <para><b>Once per block.</b> The thread's <see cref="TraceThread.Busy"/> flag is set while a traced call runs: a
/// nested allocation (a hook below that allocates through another domain, the frame provider) passes through
/// untraced. Frees and reallocs always drop the trace of the block they release, nested or not, from the current
/// session's table (a hook still in flight from a stopped session must not leave the new session's trace behind).</para>
/// <para><b>Order.</b> A trace is added after the allocator returns and removed before the block is freed (or
/// reallocated, and put back if the realloc fails): the address cannot be handed to another thread, and traced
/// there, while this thread still holds its trace. During that call the removed trace stays readable on this thread
/// (<see cref="TraceThread.ReleasingAddress"/>), so the debug hooks below can name where a bad block was made.</para>
/// <para><b>Failure.</b> A trace that cannot be stored is counted (<see cref="MemoryTracer.TraceFailures"/>) and the
/// block is returned untraced: recording never turns a good allocation into a failure.</para>
/// <para><b>Cost.</b> In exact mode one out-of-line call on malloc (the capture, usually the thread's last traceback
/// again, and the shadow word written with a plain store, plus plain adds to the thread's traced bytes) and one on free
/// (the word's dense slot, cleared with a plain store). In sampling mode a subtraction on malloc and, on free, one load
/// that finds the table has nothing to do; while samples are live, a free hashes the block and goes on to lock a
/// stripe only when the block's hash bucket (1 of 4,096) holds a sample.</para>
/// </remarks>
internal sealed unsafe class TracingHook : MemoryHook
{
    private readonly MemoryTracer _tracer;
    private readonly TraceTable _table;
    private readonly uint _domain;

    public TracingHook(MemoryTracer tracer, TraceTable table, MemoryDomainKind domain, long sampleBytes)
    {
        _tracer = tracer;
        _table = table;
        _domain = (uint)domain;
        Sampling = sampleBytes > 0;
    }

    /// <summary>Whether this session samples (the domain's fast path then skips most blocks with one subtraction).</summary>
    internal bool Sampling { get; }

    public override string Name => "tracing";

    /// <summary>Directly over the small-object allocator, the traced pipeline (its fast paths inlined); over anything
    /// else, the contract.</summary>
    internal override Pipeline.DomainPipeline CreatePipeline(in Pipeline.PipelineSite site) => Inner is SmallObjectAllocator small
        ? (Sampling, site.Limited) switch
        {
            (true, true) => new Pipeline.TracedSmallObjectPipeline<Pipeline.WithBudget, Pipeline.SampledTrace>(this, small, site),
            (true, false) => new Pipeline.TracedSmallObjectPipeline<Pipeline.NoBudget, Pipeline.SampledTrace>(this, small, site),
            (false, true) => new Pipeline.TracedSmallObjectPipeline<Pipeline.WithBudget, Pipeline.ExactTrace>(this, small, site),
            (false, false) => new Pipeline.TracedSmallObjectPipeline<Pipeline.NoBudget, Pipeline.ExactTrace>(this, small, site),
        }
        : base.CreatePipeline(site);

    public override void* Malloc(nuint size) => MallocCounted(size, out _);

    public override void* Calloc(nuint count, nuint size) => CallocCounted(count, size, out _);

    public override void* Realloc(void* ptr, nuint newSize) => ReallocCounted(ptr, newSize, out _, out _);

    public override void Free(void* ptr)
    {
        if (!FreeCounted(ptr, out _))
        {
            NoteRefusedFree(ptr); // refused below (the debug hooks): a hook above this one must not count it either
        }
    }

    public override nuint BlockSize(void* ptr) => Inner.BlockSize(ptr);

    /// <summary>
    /// The domain's fast path has allocated <paramref name="block"/> from the allocator below: trace it. When sampling,
    /// the countdown to the next sample is taken here first (inlined into the domain): most blocks stop at the compare.
    /// </summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal void Sampled(ThreadShard shard, SmallObjectAllocator small, void* block, nuint size)
    {
        long left = shard.BytesUntilSample - (long)size; // sizes here are below 2^63: the domain checked them
        if (left > 0)
        {
            shard.BytesUntilSample = left;
            return;
        }

        SampledSlow(shard, small, block, size);
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private void SampledSlow(ThreadShard shard, SmallObjectAllocator small, void* block, nuint size)
    {
        TraceThread thread = shard.Tracing ??= TraceThread.Current;
        if (!thread.Busy)
        {
            TracedOther(shard, thread, small, block, size);
        }
    }

    /// <summary>The domain's fast path has allocated <paramref name="block"/> from the allocator below: trace it
    /// (inlined into the domain's out-of-line traced malloc, in exact mode).</summary>
    /// <remarks>The common case is a pool block of the request's class, on a thread whose capture is set up for this
    /// table and whose one-pool cache holds the block's pool: the capture (usually the thread's last traceback again)
    /// and the word, with no session check and no lookup. Anything else takes <see cref="TracedChecked"/>.</remarks>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal void Traced(ThreadShard shard, SmallObjectAllocator small, void* block, nuint size)
    {
        TraceThread? thread = shard.Tracing;
        if (thread is not null && ReferenceEquals(thread.CaptureTable, _table) && !thread.Busy && size - 1 < SmallObjectAllocator.SmallRequestThreshold)
        {
            int traceback = _tracer.CaptureCached(thread);
            if (!_table.TryAddPooledCached(shard, _domain, block, size, traceback))
            {
                AddPooledCaptured(shard, block, size, traceback);
            }

            return;
        }

        TracedChecked(shard, small, block, size);
    }

    /// <summary><see cref="Traced"/> for any thread and block: sets up the thread's state, checks the session.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private void TracedChecked(ThreadShard shard, SmallObjectAllocator small, void* block, nuint size)
    {
        TraceThread thread = shard.Tracing ??= TraceThread.Current;
        if (thread.Busy)
        {
            return;
        }

        if (size - 1 < SmallObjectAllocator.SmallRequestThreshold && _table.HasShadow)
        {
            TracedPooled(shard, thread, block, size); // a pool block of the request's class
            return;
        }

        TracedOther(shard, thread, small, block, size);
    }

    /// <summary>The fast path's trace when the one-pool cache missed: the word found through the shadow, or a stripe slot.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private void AddPooledCaptured(ThreadShard shard, void* block, nuint size, int traceback)
    {
        if (traceback < 0)
        {
            _table.CountFailure(); // out of memory interning a traceback: the block stands, untraced
        }
        else if (!_table.AddPooled(shard, _domain, block, (long)size, traceback))
        {
            _table.Add(shard, _domain, (nuint)block, 0, 0, (long)size, 1, traceback);
        }
    }

    /// <summary>Any other traced block of the domain's fast path: a sample, a block of 0 or more than 512 bytes.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private void TracedOther(ThreadShard shard, TraceThread thread, SmallObjectAllocator small, void* block, nuint size)
    {
        nuint dense = 0;
        int cls = 0;
        if (_table.HasShadow)
        {
            if (size - 1 < SmallObjectAllocator.SmallRequestThreshold) // a pool block of the request's class
            {
                cls = (int)((size - 1) >> 4);
                dense = SmallObjectAllocator.DenseSlotOfPoolBlock(block, cls);
            }
            else
            {
                dense = small.DenseSlotOf(block, out cls); // 0 bytes (a 16-byte block), or a large block
            }
        }

        thread.Busy = true;
        try
        {
            _tracer.Record(shard, thread, _table, _domain, (nuint)block, dense, cls, size);
        }
        finally
        {
            thread.Busy = false;
        }
    }

    /// <summary>
    /// An exact session's trace of a pool block: the capture (the provider runs with <see cref="TraceThread.Busy"/> set,
    /// so what it allocates is not traced; nothing else here allocates through a domain) and the block's dense word.
    /// </summary>
    private void TracedPooled(ThreadShard shard, TraceThread thread, void* block, nuint size)
    {
        int traceback = _tracer.CaptureExact(thread, _table);
        if (traceback != MemoryTracer.CaptureStale)
        {
            AddPooledCaptured(shard, block, size, traceback);
        }
    }

    /// <summary>The domain's fast path is about to free <paramref name="block"/> to the allocator below: drop its trace.</summary>
    /// <remarks><paramref name="poolClass"/> is <see cref="SmallObjectAllocator.PoolClassIfInPool"/> of the block (−1
    /// when not a pool block); <paramref name="freeWork"/> is <see cref="FreeWork"/> as the domain read it: when it says
    /// the table keeps a shadow and is not retired, a pool block's trace is its dense word, taken out inline.</remarks>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal void Untraced(ThreadShard shard, void* block, int poolClass, int freeWork)
    {
        if (poolClass >= 0 && TraceTable.IsCurrentShadow(freeWork))
        {
            _table.RemovePooled(shard, _domain, block, poolClass);
        }
        else
        {
            UntracedOther(shard, block, poolClass);
        }
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private void UntracedOther(ThreadShard shard, void* block, int poolClass)
    {
        TraceTable table = Table;
        if (poolClass >= 0 && table.HasShadow)
        {
            table.RemovePooled(shard, _domain, block, poolClass);
        }
        else
        {
            table.Remove(shard, _domain, (nuint)block, 0);
        }
    }

    /// <summary>What a free through this hook has to do (<see cref="TraceTable.FreeWork"/>), in one load: 0 when nothing
    /// (a sampling session with no sample live), and the domain then frees without calling <see cref="Untraced"/>.</summary>
    internal int FreeWork
    {
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        get => _table.FreeWork;
    }

    /// <summary>Whether a free of <paramref name="ptr"/> may have a trace to remove, when <see cref="FreeWork"/> says
    /// stripes only (<see cref="TraceTable.IsStripesOnly"/>): the sampled free's filter.</summary>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    internal bool MayHoldTrace(void* ptr) => _table.MayHoldStripeTrace((nuint)ptr);

    /// <summary>The dense slot of <paramref name="ptr"/> when the allocator right below is the small-object allocator
    /// and <paramref name="ptr"/> one of its pool blocks, else 0 (the trace is keyed by the address).</summary>
    internal nuint DenseOf(void* ptr, out int cls)
    {
        if (InnerOrNull is SmallObjectAllocator small)
        {
            return small.DenseSlotOf(ptr, out cls);
        }

        cls = 0;
        return 0;
    }

    /// <summary>The current session's table (a stopped session's hook may still be in flight), or this hook's own.</summary>
    private TraceTable Table => _table.Retired ? _tracer.CurrentTable ?? _table : _table;

    internal override void* MallocCounted(nuint size, out nuint blockSize)
    {
        TraceThread thread = TraceThread.Current;
        if (thread.Busy)
        {
            return Inner.MallocCounted(size, out blockSize);
        }

        thread.Busy = true;
        try
        {
            void* p = Inner.MallocCounted(size, out blockSize);
            if (p != null)
            {
                nuint dense = DenseOf(p, out int cls);
                _tracer.Record(_table.CurrentShard(), thread, _table, _domain, (nuint)p, dense, cls, size);
            }

            return p;
        }
        finally
        {
            thread.Busy = false;
        }
    }

    internal override void* CallocCounted(nuint count, nuint size, out nuint blockSize)
    {
        TraceThread thread = TraceThread.Current;
        if (thread.Busy)
        {
            return Inner.CallocCounted(count, size, out blockSize);
        }

        thread.Busy = true;
        try
        {
            void* p = Inner.CallocCounted(count, size, out blockSize);
            if (p != null && SizeMath.TryMultiply(count, size, out nuint total))
            {
                nuint dense = DenseOf(p, out int cls);
                _tracer.Record(_table.CurrentShard(), thread, _table, _domain, (nuint)p, dense, cls, total);
            }

            return p;
        }
        finally
        {
            thread.Busy = false;
        }
    }

    internal override void* ReallocCounted(void* ptr, nuint newSize, out nuint oldBlockSize, out nuint newBlockSize)
    {
        TraceThread thread = TraceThread.Current;
        TraceTable table = Table;
        ThreadShard shard = table.CurrentShard();
        nuint oldDense = DenseOf(ptr, out int oldClass);
        bool had = table.Remove(shard, _domain, (nuint)ptr, oldDense, out TraceTable.Slot old);
        bool nested = thread.Busy;
        thread.Busy = true;
        void* p = null;
        try
        {
            if (!nested)
            {
                thread.Releasing((nuint)ptr, had ? old.Traceback : -1);
            }

            p = Inner.ReallocCounted(ptr, newSize, out oldBlockSize, out newBlockSize);
            if (p != null && !nested)
            {
                nuint dense = DenseOf(p, out int cls);
                _tracer.Record(shard, thread, table, _domain, (nuint)p, dense, cls, newSize); // traced anew, as tracemalloc does
            }

            return p;
        }
        finally
        {
            if (p == null && had)
            {
                table.Add(shard, _domain, (nuint)ptr, oldDense, oldClass, old.EstimatedSize, old.EstimatedCount, old.Traceback); // still live, still made there
            }

            if (!nested)
            {
                thread.Releasing(0, -1);
                thread.Busy = false;
            }
        }
    }

    internal override bool FreeCounted(void* ptr, out nuint blockSize)
    {
        TraceThread thread = TraceThread.Current;
        TraceTable table = Table;
        ThreadShard shard = table.CurrentShard();
        nuint dense = DenseOf(ptr, out int cls);
        if (!table.Remove(shard, _domain, (nuint)ptr, dense, out TraceTable.Slot entry))
        {
            return Inner.FreeCounted(ptr, out blockSize); // untraced (sampling, made before the start, or nested)
        }

        bool nested = thread.Busy;
        bool freed = false;
        thread.Busy = true;
        try
        {
            if (!nested)
            {
                thread.Releasing((nuint)ptr, entry.Traceback);
            }

            freed = Inner.FreeCounted(ptr, out blockSize);
            return freed;
        }
        finally
        {
            if (!freed)
            {
                table.Add(shard, _domain, (nuint)ptr, dense, cls, entry.EstimatedSize, entry.EstimatedCount, entry.Traceback); // refused or thrown (a debug report): still live
            }

            if (!nested)
            {
                thread.Releasing(0, -1);
                thread.Busy = false;
            }
        }
    }
}

/// <summary>
/// Everything the tracer keeps per thread, behind one thread-static load: the reentrancy flag, the trace of the block
/// being released, the sampler, and the last traceback with the frames it came from.
/// </summary>
internal sealed class TraceThread
{
    [ThreadStatic]
    private static TraceThread? t_current;

    public static TraceThread Current
    {
        [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
        get => t_current ?? Create();
    }

    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.NoInlining)]
    private static TraceThread Create() => t_current = new TraceThread();

    /// <summary>Inside a traced call: nested calls are not traced.</summary>
    public bool Busy;

    /// <summary>The block this thread is freeing or reallocating below the tracer (0: none), and its traceback id.</summary>
    public nuint ReleasingAddress;

    public int ReleasingTraceback = -1;

    public void Releasing(nuint address, int traceback)
    {
        ReleasingAddress = address;
        ReleasingTraceback = traceback;
    }

    /// <summary>The sampler's random state (xorshift64*); its countdown is in the thread's shard of the runtime.</summary>
    public ulong Random = ((ulong)Environment.CurrentManagedThreadId * 0x9E37_79B9_7F4A_7C15UL) | 1;

    /// <summary>Capture cache: the session it belongs to, a scratch buffer, the last frames and their traceback id.</summary>
    public object? Session;

    public Frame[] Scratch = [];

    public Frame[] LastFrames = [];

    /// <summary>The table of <see cref="Session"/>: a domain's exact fast path captures without a session check when
    /// it traces into this table.</summary>
    public TraceTable? CaptureTable;

    /// <summary>This thread's <see cref="ThreadFrameStack"/> stack, read in place when that is the provider (set with
    /// <see cref="CaptureTable"/>).</summary>
    public ThreadFrameStack.Stack FrameStack = null!;

    public int LastCount = -1;

    public int LastTotal;

    public int LastTraceback = -1;

    /// <summary>The <see cref="ThreadFrameStack.Stack.Version"/> <see cref="LastTraceback"/> was captured at, when that
    /// stack is the provider; −1 when none (another provider, no traceback yet, or a capture that did not set it).</summary>
    public long LastVersion = -1;
}
