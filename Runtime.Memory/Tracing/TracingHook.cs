namespace Runtime.Memory.Tracing;

/// <summary>
/// The tracer's hook on one domain (tracemalloc's hooks, PEP 445 use case 3): forwards every call to the allocator
/// below it and records the block's trace, in exact or sampling mode. It never changes a block, so it can be removed
/// with blocks live (<see cref="MemoryTracer.Stop"/>).
/// </summary>
/// <remarks>
/// <para><b>Once per block.</b> A thread-static flag is set while a traced call runs: a nested allocation (a hook
/// below that allocates through another domain, the frame provider) is passed through untraced.</para>
/// <para><b>Order.</b> A trace is added after the allocator returns and removed before the block is freed (or
/// reallocated, and put back if the realloc fails): the address cannot be handed to another thread, and traced
/// there, while this thread still holds its trace.</para>
/// <para><b>Failure.</b> A trace that cannot be stored is counted (<see cref="MemoryTracer.TraceFailures"/>) and the
/// block is returned untraced: recording never turns a good allocation into a failure.</para>
/// </remarks>
internal sealed unsafe class TracingHook : MemoryHook
{
    [ThreadStatic]
    private static bool t_busy;

    // The trace taken out of the table while the block is freed or reallocated below: the debug hook below may report
    // on the block during that call and asks where it was allocated (MemoryTracer.GetTraceback looks here too).
    [ThreadStatic]
    private static nuint t_releasing;

    [ThreadStatic]
    private static Traceback? t_releasingTraceback;

    private readonly MemoryTracer _tracer;
    private readonly TraceTable _table;
    private readonly uint _domain;

    public TracingHook(MemoryTracer tracer, TraceTable table, MemoryDomainKind domain)
    {
        _tracer = tracer;
        _table = table;
        _domain = (uint)domain;
    }

    public override string Name => "tracing";

    public override void* Malloc(nuint size) => MallocCounted(size, out _);

    public override void* Calloc(nuint count, nuint size) => CallocCounted(count, size, out _);

    public override void* Realloc(void* ptr, nuint newSize) => ReallocCounted(ptr, newSize, out _, out _);

    public override void Free(void* ptr) => FreeCounted(ptr, out _);

    public override nuint BlockSize(void* ptr) => Inner.BlockSize(ptr);

    internal override void* MallocCounted(nuint size, out nuint blockSize)
    {
        if (t_busy)
        {
            return Inner.MallocCounted(size, out blockSize);
        }

        t_busy = true;
        try
        {
            void* p = Inner.MallocCounted(size, out blockSize);
            if (p != null)
            {
                _tracer.Record(_table, _domain, (nuint)p, size);
            }

            return p;
        }
        finally
        {
            t_busy = false;
        }
    }

    internal override void* CallocCounted(nuint count, nuint size, out nuint blockSize)
    {
        if (t_busy)
        {
            return Inner.CallocCounted(count, size, out blockSize);
        }

        t_busy = true;
        try
        {
            void* p = Inner.CallocCounted(count, size, out blockSize);
            if (p != null && SizeMath.TryMultiply(count, size, out nuint total))
            {
                _tracer.Record(_table, _domain, (nuint)p, total);
            }

            return p;
        }
        finally
        {
            t_busy = false;
        }
    }

    internal override void* ReallocCounted(void* ptr, nuint newSize, out nuint oldBlockSize, out nuint newBlockSize)
    {
        if (t_busy)
        {
            return Inner.ReallocCounted(ptr, newSize, out oldBlockSize, out newBlockSize);
        }

        t_busy = true;
        try
        {
            bool had = _table.Remove(_domain, (nuint)ptr, out TraceEntry old);
            Releasing((nuint)ptr, had ? old.Traceback : null);
            void* p = Inner.ReallocCounted(ptr, newSize, out oldBlockSize, out newBlockSize);
            if (p == null)
            {
                if (had)
                {
                    _table.Add(_domain, (nuint)ptr, old); // the old block is still live, and still where it was made
                }
            }
            else
            {
                _tracer.Record(_table, _domain, (nuint)p, newSize); // traced anew, as tracemalloc does
            }

            return p;
        }
        finally
        {
            Releasing(0, null);
            t_busy = false;
        }
    }

    internal override bool FreeCounted(void* ptr, out nuint blockSize)
    {
        if (t_busy)
        {
            return Inner.FreeCounted(ptr, out blockSize);
        }

        t_busy = true;
        try
        {
            bool had = _table.Remove(_domain, (nuint)ptr, out TraceEntry entry);
            Releasing((nuint)ptr, had ? entry.Traceback : null);
            bool freed = Inner.FreeCounted(ptr, out blockSize);
            if (!freed && had)
            {
                _table.Add(_domain, (nuint)ptr, entry); // refused (a debug report): the block stays live
            }

            return freed;
        }
        finally
        {
            Releasing(0, null);
            t_busy = false;
        }
    }

    private static void Releasing(nuint address, Traceback? traceback)
    {
        t_releasing = address;
        t_releasingTraceback = traceback;
    }

    /// <summary>The traceback of the block this thread is freeing or reallocating below the tracer, if it is <paramref name="address"/>.</summary>
    internal static Traceback? Releasing(nuint address) => address != 0 && t_releasing == address ? t_releasingTraceback : null;

    /// <summary>Whether the current thread is inside a traced call (nested calls are not traced).</summary>
    internal static bool IsBusy => t_busy;
}
