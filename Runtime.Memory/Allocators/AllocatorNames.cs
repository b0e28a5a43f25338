namespace Runtime.Memory.Allocators;

/// <summary>
/// The allocator names of the <c>RuntimeMemory:Allocator</c> setting: the names users know from CPython's
/// <c>PYTHONMALLOC</c>, in <c>PyMemAllocatorName</c> order. Matching ignores case.
/// </summary>
public static class AllocatorNames
{
    /// <summary>The default allocators: <see cref="Pymalloc"/> (small-object allocator for mem and obj, malloc for raw).</summary>
    public const string Default = "default";

    /// <summary>The default allocators with the debug hooks on top (<see cref="DebugHook"/>).</summary>
    public const string Debug = "debug";

    /// <summary>The C runtime's malloc in every domain (<see cref="SystemAllocator"/>).</summary>
    public const string Malloc = "malloc";

    /// <summary>malloc with debug hooks.</summary>
    public const string MallocDebug = "malloc_debug";

    /// <summary>The small-object allocator for <c>mem</c> and <c>obj</c>, malloc for <c>raw</c>.</summary>
    public const string Pymalloc = "pymalloc";

    /// <summary>pymalloc with debug hooks.</summary>
    public const string PymallocDebug = "pymalloc_debug";

    /// <summary>mimalloc in every domain (<see cref="MimallocAllocator"/>; needs the system's libmimalloc.so.2).</summary>
    public const string Mimalloc = "mimalloc";

    /// <summary>mimalloc with debug hooks.</summary>
    public const string MimallocDebug = "mimalloc_debug";

    /// <summary>Every recognised name, in <c>PyMemAllocatorName</c> order.</summary>
    public static IReadOnlyList<string> All { get; } =
        [Default, Debug, Malloc, MallocDebug, Pymalloc, PymallocDebug, Mimalloc, MimallocDebug];

    /// <summary>The names whose backend this build has: all of them (whether mimalloc's library is installed is checked
    /// at start, by <see cref="Hosting.RuntimeMemoryOptionsValidator.DescribeAllocatorProblem"/>).</summary>
    public static IReadOnlyList<string> Available => All;

    /// <summary>The canonical (lowercase) form of a recognised name, or <see langword="null"/>.</summary>
    public static string? Normalize(string? name) =>
        name is null ? null : All.FirstOrDefault(n => string.Equals(n, name.Trim(), StringComparison.OrdinalIgnoreCase));

    /// <summary>Whether <paramref name="name"/> is recognised and its backend is in this build.</summary>
    public static bool IsAvailable(string? name) => Normalize(name) is { } n && Available.Contains(n);

    /// <summary>Whether <paramref name="name"/> needs the mimalloc library (<c>mimalloc</c>, <c>mimalloc_debug</c>).</summary>
    public static bool NeedsMimalloc(string? name) => Normalize(name) is Mimalloc or MimallocDebug;

    /// <summary>Whether <paramref name="name"/> is one of the names that install the debug hooks (<c>debug</c>, <c>*_debug</c>).</summary>
    public static bool IsDebug(string? name) => Normalize(name) is Debug or MallocDebug or PymallocDebug or MimallocDebug;

    /// <summary>The allocator under the debug hooks of a debug name (<c>debug</c> → <c>default</c>); other names unchanged.</summary>
    public static string? WithoutDebug(string? name) => Normalize(name) switch
    {
        Debug => Default,
        MallocDebug => Malloc,
        PymallocDebug => Pymalloc,
        MimallocDebug => Mimalloc,
        var n => n,
    };

    /// <summary>The debug name of an allocator (<c>default</c> → <c>debug</c>, <c>malloc</c> → <c>malloc_debug</c>); a
    /// debug name is returned as it is, an unknown name as it was given (validation reports it).</summary>
    public static string? WithDebug(string? name) => Normalize(name) switch
    {
        Default => Debug,
        Malloc => MallocDebug,
        Pymalloc => PymallocDebug,
        Mimalloc => MimallocDebug,
        null => name,
        var n => n,
    };
}
