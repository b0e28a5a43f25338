using Runtime.Memory.Allocators;

namespace Runtime.Memory.Testing;

/// <summary>
/// An allocator provider for tests: every domain's base allocator is a <see cref="RecordingAllocator"/> over a
/// <see cref="FailingAllocator"/> over the allocator a real provider gives (the system allocator by default), so a
/// test sees every call the code under test made and can make chosen requests fail, per domain. Registered by
/// <c>services.AddRuntimeMemory().UseFakeAllocator()</c>, or passed to <see cref="RuntimeMemory(IAllocatorProvider)"/>.
/// </summary>
/// <remarks>
/// The recorder sits on top, so a request the failing allocator refuses is recorded with a zero result. The provider
/// keeps the allocators of the last runtime it built (<see cref="IAllocatorProvider.CreateBaseAllocator"/> is called
/// once per domain per runtime); before a runtime is built, <see cref="Calls"/> and <see cref="Failures"/> throw.
/// </remarks>
public sealed class FakeAllocatorProvider : IAllocatorProvider
{
    private readonly IAllocatorProvider _inner;
    private readonly RecordingAllocator?[] _recorders = new RecordingAllocator?[MemoryDomainKindExtensions.Count];
    private readonly FailingAllocator?[] _failing = new FailingAllocator?[MemoryDomainKindExtensions.Count];

    /// <summary>A fake over the system allocator in every domain.</summary>
    public FakeAllocatorProvider()
        : this(new SystemAllocatorProvider())
    {
    }

    /// <summary>A fake over the allocators <paramref name="inner"/> gives (e.g. a <see cref="DefaultAllocatorProvider"/>).</summary>
    public FakeAllocatorProvider(IAllocatorProvider inner)
    {
        ArgumentNullException.ThrowIfNull(inner);
        _inner = inner;
    }

    /// <inheritdoc/>
    public string Name => "fake";

    /// <inheritdoc/>
    public MemoryAllocator CreateBaseAllocator(MemoryDomainKind domain)
    {
        MemoryAllocator real = _inner.CreateBaseAllocator(domain)
            ?? throw new InvalidOperationException($"Allocator provider '{_inner.Name}' returned no allocator for the {domain.ToName()} domain.");
        var failing = new FailingAllocator(real);
        var recorder = new RecordingAllocator(failing);
        Volatile.Write(ref _failing[(int)domain], failing);
        Volatile.Write(ref _recorders[(int)domain], recorder);
        return recorder;
    }

    /// <summary>The calls made in <paramref name="domain"/> (frees included), in order.</summary>
    /// <exception cref="InvalidOperationException">No runtime was built with this provider yet.</exception>
    public RecordingAllocator Calls(MemoryDomainKind domain) =>
        Volatile.Read(ref _recorders[Index(domain)]) ?? throw NotBuilt();

    /// <summary>The fault injector of <paramref name="domain"/>: <c>Failures(MemoryDomainKind.Obj).FailFrom(3)</c>.</summary>
    /// <exception cref="InvalidOperationException">No runtime was built with this provider yet.</exception>
    public FailingAllocator Failures(MemoryDomainKind domain) =>
        Volatile.Read(ref _failing[Index(domain)]) ?? throw NotBuilt();

    private static int Index(MemoryDomainKind domain) =>
        (uint)domain < (uint)MemoryDomainKindExtensions.Count
            ? (int)domain
            : throw new ArgumentOutOfRangeException(nameof(domain), domain, "Domain kinds are Raw (0), Mem (1) and Obj (2).");

    private static InvalidOperationException NotBuilt() =>
        new("No runtime has been built with this FakeAllocatorProvider yet: resolve IRuntimeMemory (or create a RuntimeMemory with it) first.");

    /// <summary>The system allocator in every domain.</summary>
    private sealed class SystemAllocatorProvider : IAllocatorProvider
    {
        public string Name => AllocatorNames.Malloc;

        public MemoryAllocator CreateBaseAllocator(MemoryDomainKind domain) => new SystemAllocator();
    }
}
