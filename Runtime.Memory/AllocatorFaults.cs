using System.Diagnostics;
using System.Reflection;

namespace Runtime.Memory;

/// <summary>
/// Who raised an exception that reached a domain's exception barrier: the runtime's own code (a built-in allocator or
/// hook: memory corruption, which stops the process) or a user-supplied allocator or hook (an allocation failure: a
/// null return, logged once).
/// </summary>
/// <remarks>
/// <para>The blame goes to the innermost frame of the exception's stack trace that is not the framework's (a user hook
/// that calls <c>Dictionary.Add</c> and gets an exception is the user's fault): the runtime's when that frame is in
/// this assembly, the user's otherwise. Cold: only after an exception.</para>
/// <para>Limit: the JIT may inline a small built-in method into the user method that calls it (guarded devirtualisation
/// of <c>Inner.Malloc</c>); its frame then shows as the user's, and the fault is treated as the user's (a null return,
/// logged). The allocators' own checks (<see cref="MemoryViolationKind.HeapCorruption"/>) do not depend on this: they
/// report corruption where they find it.</para>
/// </remarks>
internal static class AllocatorFaults
{
    private static readonly string? CoreLibrary = typeof(object).Assembly.GetName().Name;

    private static readonly string? Runtime = typeof(MemoryAllocator).Assembly.GetName().Name;

    /// <summary>Whether the innermost non-framework frame of <paramref name="ex"/>'s stack trace is the runtime's own code.</summary>
    public static bool RaisedByRuntime(Exception ex)
    {
        foreach (StackFrame frame in new StackTrace(ex, fNeedFileInfo: false).GetFrames())
        {
            // DiagnosticMethodInfo rather than GetMethod(): it keeps the owner's name under trimming and NativeAOT,
            // where GetMethod() may return null for want of reflection metadata.
            string? assembly = DiagnosticMethodInfo.Create(frame)?.DeclaringAssemblyName is { } full ? new AssemblyName(full).Name : null;
            if (assembly is null || IsFramework(assembly))
            {
                continue;
            }

            return assembly == Runtime;
        }

        return false; // nothing but framework frames: not the runtime's own code
    }

    private static bool IsFramework(string name)
    {
        return name == CoreLibrary
            || name.StartsWith("System.", StringComparison.Ordinal) || name.StartsWith("Microsoft.", StringComparison.Ordinal)
            || name is "System" or "mscorlib" or "netstandard";
    }
}
