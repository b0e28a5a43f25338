namespace Runtime.Memory.Hosting;

/// <summary>
/// A step the DI builder registered (a hook to install, a frame provider to use), run on the runtime when the
/// container creates it: after the allocator, the debug hooks and the limits, before tracing starts. Registered as a
/// service so that the steps of every <c>AddRuntimeMemory().X()</c> call are found, in registration order.
/// </summary>
internal sealed class RuntimeMemoryConfigureAction(Action<IServiceProvider, RuntimeMemory> apply)
{
    public void Apply(IServiceProvider services, RuntimeMemory runtime) => apply(services, runtime);
}
