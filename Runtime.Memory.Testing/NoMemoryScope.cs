using Runtime.Memory.Allocators;

namespace Runtime.Memory.Testing;

/// <summary>
/// Installs a <see cref="FailingAllocator"/> on all three domains of a runtime, as <c>set_nomemory(start, stop)</c>
/// does, and removes them when disposed.
/// </summary>
public sealed class NoMemoryScope : IDisposable
{
    private readonly IRuntimeMemory _runtime;
    private readonly FailingAllocator[] _hooks;

    private NoMemoryScope(IRuntimeMemory runtime, Func<FailingAllocator, FailingAllocator> window)
    {
        _runtime = runtime;
        _hooks = new FailingAllocator[MemoryDomainKindExtensions.Count];
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            var hook = window(new FailingAllocator());
            runtime[kind].InstallHook(hook);
            _hooks[(int)kind] = hook;
        }
    }

    /// <summary>
    /// In every domain of <paramref name="runtime"/>, allocation requests number <paramref name="first"/> through
    /// <paramref name="last"/> (1-based, counted per domain) fail; <paramref name="last"/> null means forever.
    /// </summary>
    public static NoMemoryScope Install(IRuntimeMemory runtime, long first, long? last = null)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        return new NoMemoryScope(runtime, h => last is { } l ? h.FailBetween(first, l) : h.FailFrom(first));
    }

    /// <summary>The hook in <paramref name="kind"/>'s domain.</summary>
    public FailingAllocator this[MemoryDomainKind kind] => _hooks[(int)kind];

    /// <summary>Removes the hooks, restoring each domain's previous chain.</summary>
    public void Dispose()
    {
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            _runtime[kind].RemoveHook(_hooks[(int)kind]);
        }
    }
}
