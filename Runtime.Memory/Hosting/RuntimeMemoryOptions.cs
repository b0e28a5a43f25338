namespace Runtime.Memory.Hosting;

/// <summary>
/// Settings of the memory service, bound from the <c>RuntimeMemory</c> configuration section.
/// </summary>
/// <remarks>
/// <code>
/// { "RuntimeMemory": { "Allocator": "default", "Debug": { "OnViolation": "FailFast", "GuardPages": false } } }
/// </code>
/// Read once when the service is created, except <see cref="Limits"/>, which follow configuration changes. Environment variables (<c>RuntimeMemory__Allocator</c>) and command-line
/// switches (<c>--RuntimeMemory:Allocator=malloc</c>) override the file, as the .NET host does.
/// </remarks>
public sealed class RuntimeMemoryOptions
{
    /// <summary>The configuration section bound by default.</summary>
    public const string DefaultSectionName = "RuntimeMemory";

    /// <summary>
    /// Which allocators the domains start on, by a <c>PYTHONMALLOC</c> name (<see cref="AllocatorNames"/>).
    /// Default <c>default</c>.
    /// </summary>
    public string Allocator { get; set; } = AllocatorNames.Default;

    /// <summary>Settings of the debug hooks (<c>RuntimeMemory:Debug</c>).</summary>
    public RuntimeMemoryDebugOptions Debug { get; set; } = new();

    /// <summary>Settings of allocation tracing (<c>RuntimeMemory:Tracing</c>).</summary>
    public RuntimeMemoryTracingOptions Tracing { get; set; } = new();

    /// <summary>Memory budgets per domain and per library tag (<c>RuntimeMemory:Limits</c>); changeable at run time.</summary>
    public RuntimeMemoryLimitsOptions Limits { get; set; } = new();
}
