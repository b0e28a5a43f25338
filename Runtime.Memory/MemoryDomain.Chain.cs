using System.Text;

namespace Runtime.Memory;

// The allocator chain of a domain: PEP 445's PyMem_GetAllocator / PyMem_SetAllocator, plus hook install and removal.
//
//   _top --> hook --> hook --> _base        (each hook's Inner is the next link)
//
// Invariants. Links change only under _chainLock; a hook is claimed (MemoryHook.TryClaim, atomic) before it is
// linked and released after it is unlinked, so one instance is never linked into two domains:
//   * following MemoryHook.Inner from _top reaches _base, and every hook on the way has Domain == this;
//   * a reader loads _top once per call and follows links that stay valid: an unlinked hook keeps its Inner, so a
//     call already inside it completes normally.
//
// What "safe from any thread" covers. Getting the allocator, installing a hook and removing a hook that keeps the
// block layout are safe at any time, with any traffic. Replacing the base allocator and removing a hook that
// changes the block layout are refused while the domain has live blocks, but the check cannot see an allocation
// that another thread has begun and not yet finished: do those two only while no other thread uses the domain
// (CPython's rule: "the allocator may not be changed after runtime init, except with a wrapper").
public sealed unsafe partial class MemoryDomain
{
    private readonly Lock _chainLock = new();

    /// <summary>The allocator at the bottom of the chain; written under <see cref="_chainLock"/>.</summary>
    private volatile MemoryAllocator _base;

    /// <summary>
    /// The allocator calls go to (PyMem_GetAllocator): the topmost hook, or the base allocator when there is no hook.
    /// Passing it back to <see cref="SetAllocator"/> later restores exactly this chain.
    /// </summary>
    public MemoryAllocator Allocator => _top;

    /// <summary>The allocator at the bottom of the chain, which hooks wrap.</summary>
    public MemoryAllocator BaseAllocator => _base;

    /// <summary>The chain from the top allocator down to the base allocator.</summary>
    public IReadOnlyList<MemoryAllocator> GetChain()
    {
        var chain = new List<MemoryAllocator>(4);
        for (MemoryAllocator? a = _top; a is not null; a = (a as MemoryHook)?.InnerOrNull)
        {
            chain.Add(a);
        }

        return chain;
    }

    /// <summary>The chain as text, top first: <c>recording &gt; malloc</c>.</summary>
    public string DescribeChain()
    {
        var text = new StringBuilder();
        foreach (MemoryAllocator a in GetChain())
        {
            text.Append(text.Length == 0 ? "" : " > ").Append(a.Name);
        }

        return text.ToString();
    }

    /// <summary>
    /// Sets the allocator of this domain (PyMem_SetAllocator). What it does depends on <paramref name="allocator"/>:
    /// <list type="bullet">
    /// <item>the current <see cref="Allocator"/>: nothing;</item>
    /// <item>an allocator lower in the current chain (one that <see cref="Allocator"/> returned earlier): restores it,
    /// unlinking the hooks above it;</item>
    /// <item>a <see cref="MemoryHook"/> built over the current <see cref="Allocator"/>, or an unbound hook: wraps the
    /// current allocator (PEP 445's get / wrap / set); always allowed;</item>
    /// <item>anything else: replaces the whole chain, which is refused while the domain has live blocks.</item>
    /// </list>
    /// Wrapping and restoring past hooks that keep the block layout are safe with any traffic; replacing, or
    /// restoring past a hook that changes the layout, must be done while no other thread uses the domain.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// A replacement while the domain has live blocks, or an unlink of a hook that changes the block layout while
    /// blocks are live: those blocks could then only be freed by the wrong allocator.
    /// </exception>
    /// <exception cref="ArgumentException">A hook in <paramref name="allocator"/>'s chain is installed in another domain.</exception>
    public void SetAllocator(MemoryAllocator allocator)
    {
        ArgumentNullException.ThrowIfNull(allocator);
        lock (_chainLock)
        {
            ThrowIfClosed();
            if (ReferenceEquals(allocator, _top))
            {
                return;
            }

            if (IsInChainUnsynchronized(allocator))
            {
                UnlinkAboveUnsynchronized(allocator);
                return;
            }

            if (allocator is MemoryHook hook && (!hook.IsBound || ReferenceEquals(hook.InnerOrNull, _top)))
            {
                LinkOnTopUnsynchronized(hook);
                return;
            }

            ReplaceChainUnsynchronized(allocator);
        }
    }

    /// <summary>
    /// Installs <paramref name="hook"/> on top of the current allocator, which it then wraps. Always allowed, even
    /// with live blocks and concurrent traffic. Any allocator the hook was built over is replaced by the current one.
    /// </summary>
    /// <exception cref="ArgumentException">The hook is installed already (here or in another domain).</exception>
    public void InstallHook(MemoryHook hook) => InstallHookWith(hook, beforeLink: null);

    /// <summary>
    /// <see cref="InstallHook(MemoryHook)"/>, telling <paramref name="beforeLink"/> what the hook will wrap while the
    /// chain is locked, before any call can reach the hook (a hook written in C must know its previous allocator).
    /// </summary>
    internal void InstallHookWith(MemoryHook hook, Action<MemoryAllocator>? beforeLink)
    {
        ArgumentNullException.ThrowIfNull(hook);
        lock (_chainLock)
        {
            ThrowIfClosed();
            if (hook.Domain is { } domain)
            {
                throw AlreadyInstalled(hook, domain);
            }

            beforeLink?.Invoke(_top);
            LinkOnTopUnsynchronized(hook);
        }
    }

    /// <summary>
    /// Unlinks <paramref name="hook"/> from this domain's chain, wherever it is, so that what was below it takes its
    /// place. Returns <see langword="false"/> when the hook is not in this domain.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// The hook changes the block layout (<see cref="MemoryHook.ChangesBlockLayout"/>) and the domain has live blocks.
    /// Remove such a hook only while no other thread uses the domain.
    /// </exception>
    public bool RemoveHook(MemoryHook hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        lock (_chainLock)
        {
            MemoryHook? above = null;
            for (MemoryAllocator a = _top; a is MemoryHook current; a = current.Inner)
            {
                if (ReferenceEquals(current, hook))
                {
                    if (hook.ChangesBlockLayout)
                    {
                        RefuseIfLive($"remove hook '{hook.Name}', which changes the block layout, from the {Name} domain");
                    }

                    if (above is null)
                    {
                        SetTopUnsynchronized(hook.Inner);
                    }
                    else
                    {
                        above.Bind(hook.Inner);
                        RebuildPipelineUnsynchronized(); // the chain's shape below the top changed
                    }

                    hook.Release(this);
                    if (_logger is { } logger)
                    {
                        Diagnostics.RuntimeMemoryLog.HookRemoved(logger, hook.Name, Name, DescribeChain());
                    }

                    return true;
                }

                above = current;
            }

            return false;
        }
    }

    /// <summary>
    /// Installs the debug hooks on this domain (PyMem_SetupDebugHooks) on top of whatever allocator is there, unless a
    /// debug hook is already anywhere in the chain: then this does nothing, however many hooks sit above it (CPython
    /// looks only at the top, and a second call under a wrapper makes its hooks call each other forever). Returns the
    /// domain's debug hook. Safe at any time, with any traffic: blocks already live are passed through unchecked (see
    /// <see cref="DebugHook"/>).
    /// </summary>
    public DebugHook SetupDebugHooks()
    {
        lock (_chainLock)
        {
            ThrowIfClosed();
            for (MemoryAllocator? a = _top; a is not null; a = (a as MemoryHook)?.InnerOrNull)
            {
                if (a.AsDebugHook is { } existing)
                {
                    return existing;
                }
            }

            var hook = new DebugHook(Kind, _debugger);
            hook.Adopt(LiveBlocks);
            _debugger.Register(hook, Kind);
            LinkOnTopUnsynchronized(hook);
            return hook;
        }
    }

    /// <summary>The domain's debug hook, or <see langword="null"/> when the debug hooks are not installed.</summary>
    public DebugHook? DebugHook
    {
        get
        {
            for (MemoryAllocator? a = _top; a is not null; a = (a as MemoryHook)?.InnerOrNull)
            {
                if (a.AsDebugHook is { } hook)
                {
                    return hook;
                }
            }

            return null;
        }
    }

    private bool IsInChainUnsynchronized(MemoryAllocator allocator)
    {
        for (MemoryAllocator? a = _top; a is not null; a = (a as MemoryHook)?.InnerOrNull)
        {
            if (ReferenceEquals(a, allocator))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Makes <paramref name="target"/>, which is in the chain, the top again.</summary>
    private void UnlinkAboveUnsynchronized(MemoryAllocator target)
    {
        for (MemoryAllocator a = _top; !ReferenceEquals(a, target); a = ((MemoryHook)a).Inner)
        {
            if (((MemoryHook)a).ChangesBlockLayout)
            {
                RefuseIfLive($"restore '{target.Name}' in the {Name} domain by removing hook '{a.Name}', which changes the block layout,");
            }
        }

        MemoryAllocator oldTop = _top;
        SetTopUnsynchronized(target);
        ReleaseHooks(oldTop, stopAt: target);
        if (_logger is { } logger)
        {
            for (MemoryAllocator a = oldTop; !ReferenceEquals(a, target); a = ((MemoryHook)a).Inner)
            {
                Diagnostics.RuntimeMemoryLog.HookRemoved(logger, a.Name, Name, DescribeChain());
            }
        }
    }

    /// <summary>Claims <paramref name="hook"/>, binds it over the current top and makes it the top.</summary>
    private void LinkOnTopUnsynchronized(MemoryHook hook)
    {
        if (!hook.TryClaim(this))
        {
            throw AlreadyInstalled(hook, hook.Domain!);
        }

        hook.Bind(_top);
        SetTopUnsynchronized(hook);
        if (_logger is { } logger)
        {
            Diagnostics.RuntimeMemoryLog.HookInstalled(logger, hook.Name, Name, DescribeChain());
        }
    }

    /// <summary>Replaces the whole chain with <paramref name="allocator"/>'s, refusing while blocks are live.</summary>
    private void ReplaceChainUnsynchronized(MemoryAllocator allocator)
    {
        RefuseIfLive($"replace the allocator of the {Name} domain ({DescribeChain()}) with '{allocator.Name}'");

        // Claim every hook of the new chain first, undoing the claims if one belongs elsewhere: nothing changes then.
        var claimed = new List<MemoryHook>();
        MemoryAllocator bottom = allocator;
        try
        {
            while (bottom is MemoryHook hook)
            {
                if (!hook.TryClaim(this))
                {
                    throw AlreadyInstalled(hook, hook.Domain!);
                }

                claimed.Add(hook);
                bottom = hook.Inner; // throws a clear error for an unbound hook
            }
        }
        catch
        {
            foreach (MemoryHook hook in claimed)
            {
                if (!IsInChainUnsynchronized(hook))
                {
                    hook.Release(this);
                }
            }

            throw;
        }

        MemoryAllocator oldTop = _top;
        string previous = _logger is null ? "" : DescribeChain();
        AdoptBase(bottom);
        SetTopUnsynchronized(allocator);
        ReleaseHooks(oldTop, stopAt: null, keep: claimed);
        if (_logger is { } logger)
        {
            Diagnostics.RuntimeMemoryLog.AllocatorReplaced(logger, Name, previous, DescribeChain());
        }
    }

    /// <summary>Claims the hooks of the chain a domain is created with.</summary>
    private void AdoptInitialChain(MemoryAllocator allocator)
    {
        MemoryAllocator a = allocator;
        while (a is MemoryHook hook)
        {
            if (!hook.TryClaim(this))
            {
                throw AlreadyInstalled(hook, hook.Domain!);
            }

            a = hook.Inner;
        }

        AdoptBase(a);
    }

    /// <summary>Makes <paramref name="allocator"/> the base; a small-object allocator reports the corruption it finds to this domain.</summary>
    private void AdoptBase(MemoryAllocator allocator)
    {
        _base = allocator;
        allocator.AdoptedBy(this);
    }

    /// <summary>
    /// Makes <paramref name="top"/> the top of the chain and publishes the pipeline built for the new chain. Every chain
    /// change comes here (or to <see cref="RebuildPipelineUnsynchronized"/>), under <see cref="_chainLock"/>.
    /// </summary>
    private void SetTopUnsynchronized(MemoryAllocator top)
    {
        _top = top;
        RebuildPipelineUnsynchronized();
    }

    /// <summary>
    /// Builds the pipeline for the chain as it is now, and for the budget (set or not), and publishes it: the top
    /// allocator chooses it (<see cref="MemoryAllocator.CreatePipeline"/>). A call already running on the previous
    /// pipeline finishes on it: the allocators it references stay valid (an unlinked hook keeps its inner allocator).
    /// </summary>
    private void RebuildPipelineUnsynchronized()
    {
        var site = new Pipeline.PipelineSite(this, _index, _accounting, _accounting.IsLimited(_index));
        _pipeline = _top.CreatePipeline(site);
        PipelineBuilds++;
        PipelineRebuilt?.Invoke(_pipeline);
    }

    /// <summary>Raised under the chain lock with each new pipeline (a native fast path follows what it allows).</summary>
    internal event Action<Pipeline.DomainPipeline>? PipelineRebuilt;

    /// <summary>How many pipelines this domain has built (one per chain or budget change), for tests.</summary>
    internal int PipelineBuilds { get; private set; }

    /// <summary>The pipeline calls run on now (for tests and reports).</summary>
    internal Pipeline.DomainPipeline CurrentPipeline => _pipeline;

    private void ReleaseHooks(MemoryAllocator from, MemoryAllocator? stopAt, List<MemoryHook>? keep = null)
    {
        for (MemoryAllocator a = from; !ReferenceEquals(a, stopAt) && a is MemoryHook hook; a = hook.Inner)
        {
            if (keep is null || !keep.Contains(hook))
            {
                hook.Release(this);
            }
        }
    }

    private static ArgumentException AlreadyInstalled(MemoryHook hook, MemoryDomain domain) =>
        new($"Hook '{hook.Name}' is already installed in the {domain.Name} domain; a hook instance can sit in one domain once. Create another instance.", nameof(hook));

    /// <summary>
    /// Throws unless the domain's live-block count is exactly zero. The count is exact only while no other thread
    /// allocates in the domain (see the file comment), which is when callers of this are documented to run.
    /// </summary>
    private void RefuseIfLive(string action)
    {
        DomainStatistics stats = GetStatistics();
        if (stats.LiveBlocks != 0)
        {
            throw new InvalidOperationException(
                $"Cannot {action}: the domain has {stats.LiveBlocks} live blocks ({stats.LiveBytes} bytes) that only the current allocator can free. " +
                "Free them first, or wrap the current allocator with a MemoryHook instead (wrapping is always allowed).");
        }
    }
}
