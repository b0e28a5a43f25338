using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;

namespace Runtime.Memory.Tracing;

/// <summary>
/// Allocation tracing for one runtime, as tracemalloc is for Python: while it traces, every block allocated in the
/// three domains carries its size, domain and traceback; <see cref="TakeSnapshot"/> freezes them for statistics and
/// comparison. Reach it as <see cref="RuntimeMemory.Tracer"/>.
/// </summary>
/// <remarks>
/// <para><b>Modes.</b> Exact (tracemalloc's): every block is traced. Sampling (<c>sampleBytes</c> &gt; 0): on average one
/// block per that many bytes allocated is traced, as a Poisson process over the bytes (a block of size s is sampled
/// with probability 1 − e^(−s/N)), and each sampled block stands for size / p bytes and 1 / p blocks, so sizes, counts
/// and statistics are unbiased estimates; it costs a thread-local subtraction on most calls.</para>
/// <para><b>Frames.</b> The <see cref="FrameProvider"/> says where the thread is: the embedding interpreter's (file and
/// line of the script), or by default <see cref="ManagedStackFrameProvider"/> for C# callers. Tracebacks are interned
/// (one object per distinct traceback), and a thread whose stack has not changed since its last traced allocation
/// reuses its last traceback without a lookup, so a trace costs a few words.</para>
/// <para><b>Start and stop at any time.</b> <see cref="Start"/> hooks all three domains (blocks already live stay
/// untraced); <see cref="Stop"/> unhooks them and drops every trace. Thread-safe throughout.</para>
/// </remarks>
public sealed unsafe class MemoryTracer
{
    /// <summary>The most frames a traceback can keep (tracemalloc's limit).</summary>
    public const int MaxFrames = ushort.MaxValue;

    private readonly RuntimeMemory _runtime;
    private readonly Lock _lock = new();
    private volatile Session? _session;

    // The shadow of exact sessions: one per tracer, kept across sessions (a thread still in flight after a stop may
    // write to it, so it is unmapped only with the runtime); each epoch (a session, or the time since its last clear)
    // tags its words with a generation of its own, handed out here.
    private Diagnostics.ShadowRadix<ulong>? _shadow;
    private int _generation;
    private IFrameProvider _frameProvider = new ManagedStackFrameProvider();

    internal MemoryTracer(RuntimeMemory runtime) => _runtime = runtime;

    private int NextGeneration() => Interlocked.Increment(ref _generation) & 127;

    /// <summary>One start-to-stop period: its table, hooks and interned tracebacks. A call still in flight after a stop
    /// writes to a dropped table.</summary>
    private sealed class Session(int frames, long sampleBytes, TraceTable table)
    {
        public readonly TraceTable Table = table;
        public readonly TracebackRegistry Tracebacks = new();
        public readonly TracingHook?[] Hooks = new TracingHook?[MemoryDomainKindExtensions.Count];
        public readonly int Frames = frames;
        public readonly long SampleBytes = sampleBytes;
    }

    /// <summary>
    /// Interned tracebacks of a session, numbered from 0 (<see cref="Frame.Unknown"/>) in the order first seen; the
    /// table stores the number. Names (files, functions) are interned too, so equal tracebacks share their strings.
    /// </summary>
    private sealed class TracebackRegistry
    {
        public const int Unknown = 0;

        private readonly ConcurrentDictionary<Traceback, int> _ids = new();
        private readonly ConcurrentDictionary<string, string> _names = new(StringComparer.Ordinal);
        private readonly Lock _append = new();
        private volatile Traceback[] _byId = new Traceback[64];
        private int _count;

        public TracebackRegistry() => Intern(new Traceback([Frame.Unknown], 0));

        public Traceback this[int id] => _byId[id];

        public int Intern(Traceback traceback)
        {
            if (_ids.TryGetValue(traceback, out int id))
            {
                return id;
            }

            lock (_append)
            {
                if (_ids.TryGetValue(traceback, out id))
                {
                    return id;
                }

                id = _count;
                if (id == _byId.Length)
                {
                    var grown = new Traceback[id * 2];
                    _byId.CopyTo(grown, 0);
                    _byId = grown;
                }

                _byId[id] = traceback; // published before the id can reach the table
                _count = id + 1;
                _ids[traceback] = id;
                return id;
            }
        }

        public string Name(string name) => _names.GetOrAdd(name, name);

        /// <summary>Bytes held: each traceback (object, frame array, dictionary entry, slot) and each name.</summary>
        public long MemoryUsage()
        {
            long total = (long)_byId.Length * IntPtr.Size;
            foreach (Traceback tb in _ids.Keys)
            {
                total += 64 + 24 + (tb.Frames.Count * Unsafe.SizeOf<Frame>()) + 32;
            }

            foreach (string name in _names.Keys)
            {
                total += 22 + (2L * name.Length) + 32;
            }

            return total;
        }
    }

    /// <summary>Where the tracer learns the current thread's frames; set it before <see cref="Start"/> (the Lua host does).</summary>
    public IFrameProvider FrameProvider
    {
        get => Volatile.Read(ref _frameProvider);
        set => Volatile.Write(ref _frameProvider, value ?? throw new ArgumentNullException(nameof(value)));
    }

    /// <summary>The table of the session tracing now, or null.</summary>
    internal TraceTable? CurrentTable => _session?.Table;

    /// <summary>Whether the tracer is tracing (tracemalloc's <c>is_tracing</c>).</summary>
    public bool IsTracing => _session is not null;

    /// <summary>The frames kept per traceback while tracing, 0 when not (tracemalloc's <c>get_traceback_limit</c>).</summary>
    public int TracebackLimit => _session?.Frames ?? 0;

    /// <summary>The sampling interval in bytes (0: exact tracing), while tracing.</summary>
    public long SampleBytes => _session?.SampleBytes ?? 0;

    /// <summary>
    /// Starts tracing every domain, keeping up to <paramref name="frames"/> frames per traceback (1 to
    /// <see cref="MaxFrames"/>); with <paramref name="sampleBytes"/> &gt; 0, traces a sample of one block per that many
    /// bytes on average instead of every block. Does nothing while already tracing (tracemalloc's rule).
    /// </summary>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="frames"/> is outside 1 to 65535, or
    /// <paramref name="sampleBytes"/> is negative.</exception>
    public void Start(int frames = 1, long sampleBytes = 0)
    {
        if (frames is < 1 or > MaxFrames)
        {
            throw new ArgumentOutOfRangeException(nameof(frames), frames, $"the number of frames must be in range [1; {MaxFrames}]");
        }

        ArgumentOutOfRangeException.ThrowIfNegative(sampleBytes);
        lock (_lock)
        {
            if (_session is not null)
            {
                return;
            }

            if (sampleBytes == 0 && Environment.Is64BitProcess)
            {
                _shadow ??= new Diagnostics.ShadowRadix<ulong>();
            }

            var table = new TraceTable(_runtime.Accounting, sampleBytes == 0 ? _shadow : null, NextGeneration);
            var session = new Session(frames, sampleBytes, table);
            _session = session; // before the hooks: a hook never records for a session that is not current
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                var hook = new TracingHook(this, session.Table, kind, sampleBytes);
                _runtime[kind].InstallHook(hook);
                session.Hooks[(int)kind] = hook;
            }

            _runtime.Debugger.Tracer = this;
            _runtime.Debugger.TracebackOf = address => GetTraceback((void*)address) is { } tb
                ? $"Memory block allocated at (most recent call first):\n{string.Join('\n', tb.Format(mostRecentFirst: true))}\n"
                : null;
        }
    }

    /// <summary>Stops tracing: unhooks the domains and drops every trace (tracemalloc's <c>stop</c>). Does nothing when not tracing.</summary>
    public void Stop()
    {
        lock (_lock)
        {
            if (_session is not { } session)
            {
                return;
            }

            _runtime.Debugger.TracebackOf = null;
            _runtime.Debugger.Tracer = null;
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                if (session.Hooks[(int)kind] is { } hook)
                {
                    _runtime[kind].RemoveHook(hook);
                }
            }

            session.Table.Retire(); // a hook still in flight turns to the next session's table, if any
            _session = null; // the table is dropped with its traces
            _shadow?.Discard(); // its pages back to the OS; a late write of the old session is ignored by the next
        }
    }

    /// <summary>Stops tracing and unmaps the shadow; the runtime is being disposed, so no call is in flight.</summary>
    internal void Dispose()
    {
        Stop();
        lock (_lock)
        {
            _shadow?.Dispose();
            _shadow = null;
        }
    }

    /// <summary>Forgets every trace, keeps tracing (tracemalloc's <c>clear_traces</c>).</summary>
    public void ClearTraces() => _session?.Table.Clear();

    /// <summary>The traced memory now and at its peak, in bytes (estimates when sampling); (0, 0) when not tracing.</summary>
    public (long Current, long Peak) GetTracedMemory()
    {
        if (_session is not { } s)
        {
            return (0, 0);
        }

        long current = s.Table.Current;
        return (current, Math.Max(current, s.Table.Peak)); // read apart, the peak may lag an add in flight
    }

    /// <summary>Sets the peak to the current traced memory (tracemalloc's <c>reset_peak</c>); the traces stay.</summary>
    public void ResetPeak() => _session?.Table.ResetPeak();

    /// <summary>Blocks traced now.</summary>
    public int TracedBlocks => _session?.Table.Count ?? 0;

    /// <summary>Traces that could not be stored since tracing started (their blocks were served untraced).</summary>
    public long TraceFailures => _session?.Table.Failures ?? 0;

    /// <summary>
    /// Bytes the tracing itself uses (tracemalloc's <c>get_tracemalloc_memory</c>): the trace table at its capacity,
    /// plus each interned traceback (object, frame array) and name. An estimate from sizes and capacities.
    /// </summary>
    public long TracingMemory
    {
        get
        {
            if (_session is not { } s)
            {
                return 0;
            }

            return s.Table.MemoryUsage() + s.Tracebacks.MemoryUsage();
        }
    }

    /// <summary>An immutable copy of every live trace (tracemalloc's <c>take_snapshot</c>).</summary>
    /// <exception cref="InvalidOperationException">The tracer is not tracing.</exception>
    public TraceSnapshot TakeSnapshot()
    {
        Session session = _session ?? throw new InvalidOperationException(
            "The tracer must be tracing memory allocations to take a snapshot: call Start() first (or set RuntimeMemory:Tracing:Enabled).");
        var traces = new List<Trace>();
        foreach (TraceTable.Slot slot in session.Table.Copy())
        {
            traces.Add(new Trace(slot.Domain, slot.EstimatedSize, session.Tracebacks[slot.Traceback], slot.EstimatedCount));
        }

        return new TraceSnapshot(traces, session.Frames, session.SampleBytes);
    }

    /// <summary>Where the block at <paramref name="ptr"/> of <paramref name="domain"/> was allocated, or null if it is not traced.</summary>
    public Traceback? GetTraceback(MemoryDomainKind domain, void* ptr)
    {
        if (_session is not { } s)
        {
            return null;
        }

        nuint dense = s.Hooks[(int)domain] is { } hook ? hook.DenseOf(ptr, out _) : 0;
        if (s.Table.TryGet((uint)domain, (nuint)ptr, dense, out TraceTable.Slot slot))
        {
            return s.Tracebacks[slot.Traceback];
        }

        TraceThread thread = TraceThread.Current; // a block this thread is freeing below the tracer right now
        return ptr != null && thread.ReleasingAddress == (nuint)ptr && thread.ReleasingTraceback >= 0 ? s.Tracebacks[thread.ReleasingTraceback] : null;
    }

    /// <summary>
    /// For the debug hooks' quarantine, while they free the block at <paramref name="address"/> below the tracing hook:
    /// where it was allocated (the trace the tracing hook has just removed, kept on this thread) and where it is being
    /// freed (the current traceback, captured now). With sampling, the free is captured only for a sampled block.
    /// </summary>
    internal void TracebacksForFree(nuint address, MemoryDomainKind domain, out Traceback? allocated, out Traceback? freed)
    {
        allocated = null;
        freed = null;
        if (_session is not { } s)
        {
            return;
        }

        TraceThread thread = TraceThread.Current;
        allocated = thread.ReleasingAddress == address && thread.ReleasingTraceback >= 0
            ? s.Tracebacks[thread.ReleasingTraceback]
            : GetTraceback(domain, (void*)address); // a tracer that is not right above the hooks
        if (allocated is null && s.SampleBytes > 0)
        {
            return;
        }

        int id = Capture(thread, s);
        freed = id >= 0 ? s.Tracebacks[id] : null;
    }

    /// <summary>Where the block at <paramref name="ptr"/> (of any domain) was allocated, or null if it is not traced.</summary>
    public Traceback? GetTraceback(void* ptr)
    {
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            if (GetTraceback(kind, ptr) is { } tb)
            {
                return tb;
            }
        }

        return null;
    }

    /// <summary>
    /// Traces memory the runtime did not allocate (<c>PyTraceMalloc_Track</c>): a block of <paramref name="size"/> bytes
    /// at <paramref name="address"/> in <paramref name="domain"/>, with the current traceback; tracking it again
    /// updates its trace. Use a domain number of your own (0, 1 and 2 are raw, mem and obj).
    /// </summary>
    /// <returns>0 on success, −1 if the trace could not be stored, −2 when not tracing.</returns>
    public int Track(uint domain, nuint address, nuint size)
    {
        if (_session is not { } s)
        {
            return -2;
        }

        TraceThread thread = TraceThread.Current;
        bool nested = thread.Busy;
        thread.Busy = true; // the capture's own allocations, if any, are not traced
        try
        {
            int traceback = Capture(thread, s);
            if (traceback < 0)
            {
                s.Table.CountFailure();
                return -1;
            }

            return s.Table.Add(domain, address, (long)Math.Min((ulong)size, long.MaxValue), 1, traceback) ? 0 : -1;
        }
        catch (Exception)
        {
            s.Table.CountFailure();
            return -1; // "failed to allocate memory to store the trace", as PyTraceMalloc_Track
        }
        finally
        {
            thread.Busy = nested;
        }
    }

    /// <summary>Stops tracing a block tracked with <see cref="Track"/> (<c>PyTraceMalloc_Untrack</c>); nothing if it is not traced.</summary>
    /// <returns>0, or −2 when not tracing.</returns>
    public int Untrack(uint domain, nuint address)
    {
        if (_session is not { } s)
        {
            return -2;
        }

        s.Table.Remove(domain, address, out _);
        return 0;
    }

    /// <summary>
    /// The blocks traced now, grouped by traceback, largest first: a header line, then for each of the first
    /// <paramref name="limit"/> groups its statistic line and its traceback (most recent call first), and for a stack
    /// deeper than the provider looked, <c>... from a stack of N+ frames</c> (<see cref="Traceback.TotalFramesIsLowerBound"/>).
    /// </summary>
    /// <exception cref="InvalidOperationException">The tracer is not tracing.</exception>
    public string FormatLeakReport(int limit = 10)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        TraceSnapshot snapshot = TakeSnapshot();
        IReadOnlyList<TraceStatistic> groups = snapshot.Statistics(TraceGrouping.Traceback);
        var text = new System.Text.StringBuilder();
        text.Append(System.Globalization.CultureInfo.InvariantCulture,
            $"Live blocks: {snapshot.TotalCount} in {groups.Count} {(groups.Count == 1 ? "place" : "places")}, {TraceFormat.Size(snapshot.TotalSize)} in total{(snapshot.SampleBytes > 0 ? " (estimated from a sample)" : "")}; largest first:\n");
        foreach (TraceStatistic group in groups.Take(limit))
        {
            text.Append(group.Traceback.MostRecent).Append(": size=").Append(TraceFormat.Size(group.Size)).Append(", count=")
                .Append(group.Count).Append('\n');
            foreach (string line in group.Traceback.Format(mostRecentFirst: true))
            {
                text.Append(line).Append('\n');
            }

            if (group.Traceback.TotalFramesIsLowerBound)
            {
                text.Append("  ... from a stack of ").Append(group.Traceback.TotalFramesText).Append(" frames\n");
            }
        }

        if (groups.Count > limit)
        {
            text.Append(System.Globalization.CultureInfo.InvariantCulture, $"... and {groups.Count - limit} more places\n");
        }

        return text.ToString();
    }

    // ---- the recording path (from the hooks) ------------------------------------------------------------------------

    /// <summary>Records a block the hook of <paramref name="table"/>'s session has just allocated (inlined into the
    /// hooks: in exact mode the session check, the capture and the shadow word are one call with the provider's).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal void Record(ThreadShard shard, TraceThread thread, TraceTable table, uint domain, nuint address, nuint dense, int denseClass, nuint size)
    {
        Session? session = _session;
        if (session is null || !ReferenceEquals(session.Table, table))
        {
            return; // stopped (or restarted) while the call was in flight
        }

        if (session.SampleBytes > 0)
        {
            RecordSample(shard, thread, session, table, domain, address, size);
            return;
        }

        int traceback = Capture(thread, session);
        if (traceback < 0)
        {
            table.CountFailure(); // out of memory interning a traceback: the block stands, untraced
            return;
        }

        table.Add(shard, domain, address, dense, denseClass, (long)size, 1, traceback);
    }

    /// <summary><see cref="Capture"/>'s result when a new traceback could not be stored (out of memory).</summary>
    internal const int CaptureFailed = -1;

    /// <summary><see cref="CaptureExact"/>'s result when the table's session has ended.</summary>
    internal const int CaptureStale = -2;

    /// <summary>The current traceback id for an exact trace in <paramref name="table"/> (the domains' fast path);
    /// <see cref="CaptureFailed"/>, or <see cref="CaptureStale"/> when that table's session has stopped or restarted.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int CaptureExact(TraceThread thread, TraceTable table)
    {
        Session? session = _session;
        return session is not null && ReferenceEquals(session.Table, table) ? Capture(thread, session) : CaptureStale;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void RecordSample(ThreadShard shard, TraceThread thread, Session session, TraceTable table, uint domain, nuint address, nuint size)
    {
        if (Sample(shard, thread, session, size, out long estimatedSize, out long estimatedCount))
        {
            int traceback = Capture(thread, session);
            if (traceback < 0)
            {
                table.CountFailure();
                return;
            }

            table.Add(shard, domain, address, 0, 0, estimatedSize, estimatedCount, traceback);
        }
    }

    /// <summary>
    /// The Poisson sampler: a per-thread count of bytes until the next sample, drawn from an exponential distribution
    /// of mean N (the session's interval). A block of size s ends the count with probability p = 1 − e^(−s/N) and then
    /// stands for s / p bytes and 1 / p blocks, rounded up or down at random in proportion, so both estimates are
    /// unbiased. Blocks of size 0 hold no bytes and are never sampled.
    /// </summary>
    /// <remarks>The domain's fast path may already have subtracted sizes that did not end the count; a call that gets
    /// here either starts the thread's sampler for this session or ends a countdown (after subtracting its own size once).</remarks>
    private static bool Sample(ThreadShard shard, TraceThread state, Session session, nuint size, out long estimatedSize, out long estimatedCount)
    {
        long interval = session.SampleBytes;
        if (!ReferenceEquals(shard.SamplerSession, session))
        {
            shard.SamplerSession = session; // a countdown drawn for another interval does not carry over
            shard.BytesUntilSample = Draw(state, interval);
        }

        shard.BytesUntilSample -= (long)Math.Min((ulong)size, long.MaxValue);
        if (shard.BytesUntilSample > 0)
        {
            estimatedSize = estimatedCount = 0;
            return false;
        }

        shard.BytesUntilSample = Draw(state, interval);
        double x = (double)size / interval;
        double p = x < 1e-5 ? x * (1 - (x / 2)) : 1 - Math.Exp(-x); // 1 - e^(-x), without cancellation for small x
        estimatedSize = RoundAtRandom(state, size / p);
        estimatedCount = RoundAtRandom(state, 1 / p);
        return true;
    }

    /// <summary><paramref name="value"/> rounded down or up, up with the probability of its fraction: unbiased.</summary>
    private static long RoundAtRandom(TraceThread state, double value)
    {
        double floor = Math.Floor(value);
        return (long)floor + (Uniform(state) < value - floor ? 1 : 0);
    }

    private static double Uniform(TraceThread state)
    {
        ulong x = state.Random; // xorshift64*
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        state.Random = x;
        return ((x * 0x2545_F491_4F6C_DD1DUL) >> 11) * (1.0 / (1UL << 53)); // [0, 1)
    }

    private static long Draw(TraceThread state, long interval) =>
        Math.Max(1, RoundAtRandom(state, -Math.Log(1 - Uniform(state)) * interval));

    /// <summary>
    /// Whether two frames are equal, field by field: names are compared by reference first, since an interpreter
    /// hands the same string object for the same file each time (the generic equality costs several calls per frame).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool SameFrame(in Frame x, in Frame y) =>
        x.Line == y.Line
        && (ReferenceEquals(x.File, y.File) || string.Equals(x.File, y.File, StringComparison.Ordinal))
        && (ReferenceEquals(x.Function, y.Function) || string.Equals(x.Function, y.Function, StringComparison.Ordinal));

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool SameFrames(ReadOnlySpan<Frame> a, ReadOnlySpan<Frame> b)
    {
        for (int i = 0; i < a.Length; i++)
        {
            if (!SameFrame(in a[i], in b[i]))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>
    /// The current thread's traceback id, interned; the last one again when the frames have not changed; −1 when a new
    /// traceback could not be stored (out of memory). Never throws, and has no exception handler of its own, so it is
    /// inlined into the hooks: the provider is called through <see cref="GetFramesGuarded"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int Capture(TraceThread state, Session session)
    {
        if (!ReferenceEquals(state.Session, session) && !StartCapturing(state, session))
        {
            return -1;
        }

        return CaptureFrames(state, session);
    }

    /// <summary>
    /// <see cref="Capture"/> for a thread whose capture is set up for the session of the table it traces into
    /// (<see cref="TraceThread.CaptureTable"/>, the domains' exact fast path): without the session check, since a trace
    /// written for a session that has just stopped is ignored by the next (its words carry an ended generation).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal int CaptureCached(TraceThread state) => CaptureFrames(state, Unsafe.As<Session>(state.Session!));

    /// <summary>
    /// The capture of a thread set up for <paramref name="session"/>. With <see cref="ThreadFrameStack"/> as the
    /// provider, a stack that has not moved since the thread's last capture (the same version) gives the last traceback
    /// again without a call, whatever the number of frames. Anything else is <see cref="CaptureMoved"/>'s, out of line.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private int CaptureFrames(TraceThread state, Session session)
    {
        IFrameProvider provider = FrameProvider;
        if (provider is ThreadFrameStack && state.FrameStack.Version == state.LastVersion)
        {
            return state.LastTraceback;
        }

        return CaptureMoved(state, session, provider);
    }

    /// <summary><see cref="CaptureFrames"/> once the stack has moved (or for another provider): the provider's frames
    /// (their number clamped to the scratch buffer), the last traceback when they are the last frames again, else a new
    /// one (<see cref="Intern"/>); <see cref="TracebackRegistry.Unknown"/> for no frames or a provider that threw.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int CaptureMoved(TraceThread state, Session session, IFrameProvider provider)
    {
        long version = provider is ThreadFrameStack ? state.FrameStack.Version : -1; // the provider reads this same thread's stack, unchanged
        Frame[] scratch = state.Scratch;
        int count = Math.Min(GetFramesGuarded(state, provider, scratch, out int total), scratch.Length);
        if (count <= 0)
        {
            state.LastVersion = -1;
            return TracebackRegistry.Unknown; // a provider must not throw; if it does, the trace still stands
        }

        // The provider looked at most Lookahead levels past the frames kept (IFrameProvider's contract); a deeper stack
        // is recorded as "at least limit + 1" whatever figure it gave, so the same frames at any great depth are one
        // traceback (a figure per depth would intern a traceback per depth of a deep recursion).
        int limit = scratch.Length + IFrameProvider.Lookahead;
        if (total > limit)
        {
            total = limit + 1;
        }

        Span<Frame> frames = scratch.AsSpan(0, count);
        int id = state.LastCount == count && state.LastTotal == total && SameFrames(frames, state.LastFrames.AsSpan(0, count))
            ? state.LastTraceback // LastCount is -1 until a traceback is interned
            : Intern(state, session, frames, total);
        state.LastVersion = id >= 0 ? version : -1;
        return id;
    }

    /// <summary>The provider's frames, or −1 when it threw. The provider runs with <see cref="TraceThread.Busy"/> set:
    /// what it allocates through a traced domain is not traced (and cannot recurse into the capture).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int GetFramesGuarded(TraceThread state, IFrameProvider provider, Frame[] scratch, out int total)
    {
        bool nested = state.Busy;
        state.Busy = true;
        try
        {
            return provider.GetFrames(scratch, out total);
        }
        catch (Exception)
        {
            total = 0;
            return -1;
        }
        finally
        {
            state.Busy = nested;
        }
    }

    /// <summary>Sets up the thread's capture buffers for <paramref name="session"/>; false when out of memory.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool StartCapturing(TraceThread state, Session session)
    {
        try
        {
            var scratch = new Frame[session.Frames];
            var last = new Frame[session.Frames];
            state.Scratch = scratch;
            state.LastFrames = last;
            state.LastCount = -1;
            state.LastTraceback = -1;
            state.LastVersion = -1;
            state.Session = session;
            state.FrameStack = ThreadFrameStack.Current;
            state.CaptureTable = session.Table;
            return true;
        }
        catch (OutOfMemoryException)
        {
            return false;
        }
    }

    /// <summary>Interns the frames the provider has just written and makes them the thread's last; −1 when out of memory.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static int Intern(TraceThread state, Session session, Span<Frame> frames, int total)
    {
        int count = frames.Length;
        int id;
        try
        {
            TracebackRegistry registry = session.Tracebacks;
            var oldestFirst = new Frame[count];
            for (int i = 0; i < count; i++)
            {
                Frame f = frames[count - 1 - i];
                oldestFirst[i] = new Frame(registry.Name(f.File), f.Line, f.Function is null ? null : registry.Name(f.Function));
            }

            id = registry.Intern(new Traceback(oldestFirst, total, totalFramesIsLowerBound: total > state.Scratch.Length + IFrameProvider.Lookahead));
        }
        catch (Exception)
        {
            return -1; // out of memory, or a frame the provider left without a file
        }

        frames.CopyTo(state.LastFrames);
        state.LastCount = count;
        state.LastTotal = total;
        state.LastTraceback = id;
        return id;
    }
}
