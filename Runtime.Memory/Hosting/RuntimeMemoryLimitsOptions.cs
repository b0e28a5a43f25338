namespace Runtime.Memory.Hosting;

/// <summary>
/// Memory budgets, bound from <c>RuntimeMemory:Limits</c>: the most live bytes each domain, and each library tag that
/// routes memory into the runtime, may hold. A key left out means no budget. Applied when the service is created and
/// again whenever the configuration changes (through <c>IOptionsMonitor</c>): no restart needed.
/// </summary>
/// <remarks>
/// <code>
/// { "RuntimeMemory": { "Limits": {
///     "Obj": { "MaxBytes": 268435456 },
///     "Tags": { "lua": { "MaxBytes": 67108864 }, "zlib": { "MaxBytes": 8388608 } } } } }
/// </code>
/// An allocation that would pass a budget returns null, as out of memory does; the refusal is counted
/// (<see cref="DomainStatistics.LimitRefusals"/>, <see cref="LibraryAccount.LimitRefusals"/>, the
/// <c>runtime.memory.allocation.failures</c> metric with <c>error.type=limit</c>) and logged once per episode.
/// A change with a bad value is not applied: the budgets stay as they were and the problem is logged (event 4303).
/// </remarks>
public sealed class RuntimeMemoryLimitsOptions
{
    /// <summary>The budget of the <c>raw</c> domain (<c>RuntimeMemory:Limits:Raw:MaxBytes</c>).</summary>
    public RuntimeMemoryBudgetOptions Raw { get; set; } = new();

    /// <summary>The budget of the <c>mem</c> domain.</summary>
    public RuntimeMemoryBudgetOptions Mem { get; set; } = new();

    /// <summary>The budget of the <c>obj</c> domain (where the host's Lua states live).</summary>
    public RuntimeMemoryBudgetOptions Obj { get; set; } = new();

    /// <summary>
    /// Budgets per library tag (<c>RuntimeMemory:Limits:Tags:&lt;tag&gt;:MaxBytes</c>): <c>zlib</c>, <c>sqlite</c>,
    /// <c>openssl</c>, <c>lua</c>, or a tag of your own route. Tags match ignoring case.
    /// </summary>
    public Dictionary<string, RuntimeMemoryBudgetOptions> Tags { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The budget of <paramref name="kind"/>.</summary>
    public RuntimeMemoryBudgetOptions this[MemoryDomainKind kind] => kind switch
    {
        MemoryDomainKind.Raw => Raw,
        MemoryDomainKind.Mem => Mem,
        MemoryDomainKind.Obj => Obj,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Domain kinds are Raw, Mem and Obj."),
    };
}
