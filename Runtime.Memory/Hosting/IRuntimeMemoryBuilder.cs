namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// What <c>AddRuntimeMemory</c> returns: the service collection the memory service was added to, for the extension
/// methods that configure it further (<see cref="RuntimeMemoryBuilderExtensions"/>: the allocator, hooks, the frame
/// provider, budgets, tracing, debug hooks; <c>Runtime.Memory.Testing</c> adds the fakes).
/// </summary>
public interface IRuntimeMemoryBuilder
{
    /// <summary>The services the runtime memory was added to.</summary>
    IServiceCollection Services { get; }
}
