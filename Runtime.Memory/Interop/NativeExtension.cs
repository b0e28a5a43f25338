using System.Runtime.InteropServices;

namespace Runtime.Memory.Interop;

/// <summary>
/// A native extension loaded into a runtime: a shared library that exports
/// <c>int rtmem_extension_init(const rtmem_api *api)</c> (see <c>runtime_mem.h</c>), which receives the runtime's
/// function table and keeps it for as long as it allocates.
/// </summary>
public sealed unsafe class NativeExtension : IDisposable
{
    /// <summary>The export every extension has.</summary>
    public const string InitExport = "rtmem_extension_init";

    private nint _library;

    private NativeExtension(string path, nint library)
    {
        Path = path;
        _library = library;
    }

    /// <summary>The file the extension was loaded from.</summary>
    public string Path { get; }

    /// <summary>
    /// Loads the library at <paramref name="path"/> and calls its <c>rtmem_extension_init</c> with
    /// <paramref name="runtime"/>'s table.
    /// </summary>
    /// <exception cref="DllNotFoundException">The library cannot be loaded.</exception>
    /// <exception cref="EntryPointNotFoundException">It does not export <c>rtmem_extension_init</c>.</exception>
    /// <exception cref="InvalidOperationException">Its init function returned non-zero (the value is in the message).</exception>
    public static NativeExtension Load(IRuntimeMemory runtime, string path)
    {
        RuntimeMemory target = RuntimeMemory.Of(runtime);
        ArgumentNullException.ThrowIfNull(path);
        nint library = NativeLibrary.Load(path);
        try
        {
            if (!NativeLibrary.TryGetExport(library, InitExport, out nint init))
            {
                throw new EntryPointNotFoundException($"Native extension '{path}' does not export {InitExport}(const rtmem_api *).");
            }

            int status = ((delegate* unmanaged<RtMemApi*, int>)init)(target.NativeApi);
            if (status != 0)
            {
                throw new InvalidOperationException($"Native extension '{path}': {InitExport} returned {status}.");
            }

            return new NativeExtension(path, library);
        }
        catch
        {
            NativeLibrary.Free(library);
            throw;
        }
    }

    /// <summary>The address of another export of the extension, for calling it through a function pointer.</summary>
    /// <exception cref="EntryPointNotFoundException">There is no such export.</exception>
    public nint GetExport(string name)
    {
        ObjectDisposedException.ThrowIf(_library == 0, this);
        return NativeLibrary.TryGetExport(_library, name, out nint address)
            ? address
            : throw new EntryPointNotFoundException($"Native extension '{Path}' does not export {name}.");
    }

    /// <summary>
    /// Unloads the library. Whatever it installed (hooks, allocators) must have been removed first: the runtime would
    /// otherwise call into unloaded code.
    /// </summary>
    public void Dispose()
    {
        nint library = Interlocked.Exchange(ref _library, 0);
        if (library != 0)
        {
            NativeLibrary.Free(library);
        }
    }
}
