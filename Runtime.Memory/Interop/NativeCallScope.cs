namespace Runtime.Memory.Interop;

/// <summary>
/// Marks the current thread as serving a call that came from native code (an allocator callback of zlib, SQLite,
/// Lua or an extension written in C), so that nothing below it throws: under
/// <see cref="ViolationAction.Throw"/> the debug hooks then log instead, because an exception must never unwind
/// into native frames. Every entry point that native code calls opens one:
/// <code>
/// [UnmanagedCallersOnly]
/// static void* LuaAlloc(void* ud, void* ptr, nuint osize, nuint nsize)
/// {
///     using var scope = NativeCallScope.Enter();
///     ...
/// }
/// </code>
/// Scopes nest; the cost is one thread-static increment and decrement.
/// </summary>
public ref struct NativeCallScope
{
    [ThreadStatic]
    private static int t_depth;

    private bool _entered;

    /// <summary>Whether the current thread is inside a <see cref="NativeCallScope"/>.</summary>
    public static bool IsActive => t_depth > 0;

    /// <summary>Opens a scope on the current thread; dispose it on the same thread.</summary>
    public static NativeCallScope Enter()
    {
        t_depth++;
        return new NativeCallScope { _entered = true };
    }

    /// <summary>Closes the scope.</summary>
    public void Dispose()
    {
        if (_entered)
        {
            _entered = false;
            t_depth--;
        }
    }
}
