using Runtime.Memory.Accounting;
using Runtime.Memory.Allocators;
using Runtime.Memory.Allocators.SmallObject;
using Runtime.Memory.Debugging;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Hosting;
using Runtime.Memory.Tracing;

namespace Runtime.Memory;

/// <summary>
/// The memory service of one runtime: its three domains, their accounting, the library accounts, the tracer and the
/// metrics. Everything a host needs is here, so that it never casts to <see cref="RuntimeMemory"/>. Two instances
/// share no state.
/// </summary>
/// <remarks>The library routes (Lua, zlib, SQLite, OpenSSL) and native extensions need the runtime that
/// <c>AddRuntimeMemory</c> or <see cref="RuntimeMemory.Create"/> made; given another implementation (a hand-written
/// fake), they throw <see cref="ArgumentException"/> saying so.</remarks>
public interface IRuntimeMemory : IDisposable
{
    /// <summary>The configured allocator name (<see cref="AllocatorNames"/>) or the provider's name.</summary>
    string AllocatorName { get; }

    /// <summary>The <c>raw</c> domain.</summary>
    MemoryDomain Raw { get; }

    /// <summary>The <c>mem</c> domain.</summary>
    MemoryDomain Mem { get; }

    /// <summary>The <c>obj</c> domain.</summary>
    MemoryDomain Obj { get; }

    /// <summary>The domain of <paramref name="kind"/>.</summary>
    MemoryDomain this[MemoryDomainKind kind] { get; }

    /// <summary>The debug state shared by the domains' debug hooks: violations found, live debug blocks, settings.</summary>
    MemoryDebugger Debugger { get; }

    /// <summary>
    /// Installs the debug hooks on all three domains (PyMem_SetupDebugHooks), on top of whatever allocator each has.
    /// Calling it again, or after a <c>*_debug</c> allocator name installed them, does nothing, even when other hooks
    /// sit above them. See <see cref="MemoryDomain.SetupDebugHooks"/>.
    /// </summary>
    void SetupDebugHooks();

    /// <summary>All three domains' accounting, read together.</summary>
    RuntimeMemoryStatistics GetStatistics();

    /// <summary>Allocation tracing of the three domains (tracemalloc): start, stop, snapshots, tracebacks of blocks.</summary>
    MemoryTracer Tracer { get; }

    /// <summary>
    /// The account of the native library tagged <paramref name="tag"/> (created on first use): what the library's
    /// route into this runtime holds, and its budget. Tags match ignoring case.
    /// </summary>
    /// <exception cref="InvalidOperationException">More than 29 distinct tags (the accounts a runtime keeps per thread).</exception>
    LibraryAccount Tag(string tag);

    /// <summary>Every library account, by tag.</summary>
    IReadOnlyCollection<LibraryAccount> Tags { get; }

    /// <summary>The instruments on the <c>Runtime.Memory</c> meter, or null until metrics are enabled (DI enables them
    /// when an <see cref="System.Diagnostics.Metrics.IMeterFactory"/> is registered, as the generic host does).</summary>
    RuntimeMemoryMetrics? Metrics { get; }

    /// <summary>The small-object allocator at the base of <paramref name="kind"/>'s chain, or null when the domain runs
    /// on another allocator: its pool statistics and reports.</summary>
    SmallObjectAllocator? SmallObjects(MemoryDomainKind kind);

    /// <summary>Applies the byte budgets of <paramref name="limits"/> to the domains and library tags now (a limit
    /// absent from <paramref name="limits"/> is removed).</summary>
    void ApplyLimits(RuntimeMemoryLimitsOptions limits);
}
