using System.Text;

namespace Runtime.Memory;

// The allocator chain of a domain: PEP 445's PyMem_GetAllocator / PyMem_SetAllocator, plus hook install and removal.
//
//   _top --> hook --> hook --> _base        (each hook's Inner is the next link)
//
// Invariants, held under _chainLock and relied on by readers without it:
//   * following MemoryHook.Inner from _top always reaches _base, and every hook on the way has Domain == this;
//   * a hook is linked into at most one domain;
//   * links only change under _chainLock; a reader loads _top once per call and follows links that stay valid
//     (an unlinked hook keeps its Inner, so a call already inside it completes normally).
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
            if (text.Length > 0)
            {
                text.Append(" > ");
            }

            text.Append(a.Name);
        }

        return text.ToString();
    }

    /// <summary>
    /// Sets the allocator of this domain (PyMem_SetAllocator). Safe to call from any thread. What it does depends on
    /// <paramref name="allocator"/>:
    /// <list type="bullet">
    /// <item>the current <see cref="Allocator"/>: nothing;</item>
    /// <item>an allocator lower in the current chain (one that <see cref="Allocator"/> returned earlier): restores it,
    /// unlinking the hooks above it;</item>
    /// <item>a <see cref="MemoryHook"/> built over the current <see cref="Allocator"/>, or an unbound hook: wraps the
    /// current allocator (PEP 445's get / wrap / set); always allowed;</item>
    /// <item>anything else: replaces the whole chain, which is refused while the domain has live blocks.</item>
    /// </list>
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
                CheckNotInstalledElsewhere(hook);
                hook.Bind(_top);
                LinkOnTopUnsynchronized(hook);
                return;
            }

            RefuseIfLive($"replace the allocator of the {Name} domain ({DescribeChain()}) with '{allocator.Name}'");
            MemoryAllocator newBase = BottomOf(allocator); // validates the whole new chain before anything changes
            ReleaseHooksUnsynchronized(_top, stopAt: null);
            _base = newBase;
            if (allocator is MemoryHook newTop)
            {
                AdoptChainUnsynchronized(newTop);
            }

            _top = allocator;
        }
    }

    /// <summary>
    /// Installs <paramref name="hook"/> on top of the current allocator, which it then wraps. Always allowed, even
    /// with live blocks. Any allocator the hook was built over is replaced by the current one.
    /// </summary>
    /// <exception cref="ArgumentException">The hook is installed already (here or in another domain).</exception>
    public void InstallHook(MemoryHook hook)
    {
        ArgumentNullException.ThrowIfNull(hook);
        lock (_chainLock)
        {
            if (hook.Domain is not null)
            {
                throw new ArgumentException(
                    $"Hook '{hook.Name}' is already installed in the {hook.Domain.Name} domain; a hook instance can sit in one domain once. Create another instance.",
                    nameof(hook));
            }

            hook.Bind(_top);
            LinkOnTopUnsynchronized(hook);
        }
    }

    /// <summary>
    /// Unlinks <paramref name="hook"/> from this domain's chain, wherever it is, so that what was below it takes its
    /// place. Returns <see langword="false"/> when the hook is not in this domain.
    /// </summary>
    /// <exception cref="InvalidOperationException">
    /// The hook changes the block layout (<see cref="MemoryHook.ChangesBlockLayout"/>) and the domain has live blocks.
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
                        _top = hook.Inner;
                    }
                    else
                    {
                        above.Bind(hook.Inner);
                    }

                    hook.Domain = null;
                    return true;
                }

                above = current;
            }

            return false;
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

        ReleaseHooksUnsynchronized(_top, stopAt: target);
        _top = target;
    }

    private void LinkOnTopUnsynchronized(MemoryHook hook)
    {
        CheckNotInstalledElsewhere(hook);
        hook.Domain = this;
        _top = hook;
    }

    /// <summary>Marks every hook of a chain given at construction or replacement as installed here.</summary>
    private void AdoptChainUnsynchronized(MemoryHook top)
    {
        for (MemoryAllocator a = top; a is MemoryHook hook; a = hook.Inner)
        {
            CheckNotInstalledElsewhere(hook);
            hook.Domain = this;
        }
    }

    private void CheckNotInstalledElsewhere(MemoryHook hook)
    {
        if (hook.Domain is not null && !ReferenceEquals(hook.Domain, this))
        {
            throw new ArgumentException(
                $"Hook '{hook.Name}' is installed in the {hook.Domain.Name} domain already; a hook instance can sit in one domain once.",
                nameof(hook));
        }
    }

    private static void ReleaseHooksUnsynchronized(MemoryAllocator from, MemoryAllocator? stopAt)
    {
        for (MemoryAllocator a = from; !ReferenceEquals(a, stopAt) && a is MemoryHook hook; a = hook.Inner)
        {
            hook.Domain = null;
        }
    }

    /// <summary>
    /// The base allocator under <paramref name="allocator"/>'s chain, checking that every hook on the way is bound
    /// and free to join this domain.
    /// </summary>
    private MemoryAllocator BottomOf(MemoryAllocator allocator)
    {
        MemoryAllocator a = allocator;
        while (a is MemoryHook hook)
        {
            CheckNotInstalledElsewhere(hook);
            a = hook.Inner; // throws a clear error for an unbound hook
        }

        return a;
    }

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
