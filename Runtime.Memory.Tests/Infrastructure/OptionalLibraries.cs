using System.Runtime.InteropServices;
using Runtime.Memory.Extensions;
using Runtime.Memory.Platform;

namespace Runtime.Memory.Tests.Infrastructure;

/// <summary>The optional native pieces some tests need, each brought by a Debian package (or built with gcc).</summary>
public enum OptionalLibrary
{
    /// <summary><c>libmimalloc.so.2</c> (Debian <c>libmimalloc2.0</c>): the <c>mimalloc</c> and <c>mimalloc_debug</c> allocator names.</summary>
    Mimalloc,

    /// <summary><c>libz.so.1</c> (Debian <c>zlib1g</c>): the zlib route.</summary>
    Zlib,

    /// <summary><c>libsqlite3.so.0</c> (Debian <c>libsqlite3-0</c>): the SQLite route.</summary>
    Sqlite,

    /// <summary><c>libcrypto.so.3</c> (Debian <c>libssl3</c>): the OpenSSL route.</summary>
    Crypto,

    /// <summary><c>libruntime_mem.so</c>, the library's own C part, built with gcc (Debian <c>gcc</c>) when the library builds.</summary>
    RuntimeNative,

    /// <summary><c>libcounting_ext.so</c>, the sample C extension, built with gcc (Debian <c>gcc</c>) when the tests build.</summary>
    CountingExtension,
}

/// <summary>
/// The one place where a test asks whether an optional native library is on this machine. A test that needs a missing
/// one is skipped (it must be a <c>[SkippableFact]</c> or <c>[SkippableTheory]</c>), with a reason that names the files
/// tried and the Debian package that brings them: never failed, never passed without running. The answers come from the
/// library itself where it has them (<see cref="MimallocAllocator.LoadProblem"/>, <see cref="ZlibNative.EnsureAvailable"/>,
/// the file names of <see cref="NativeLibraries.CandidatesOf"/>). <c>.ci/run</c> installs every package and fails when
/// any test but the opt-in soak was skipped, so in CI these rows always run.
/// </summary>
public static class OptionalLibraries
{
    /// <summary>The start of every skip reason given here, so that a reader (and <c>.ci/run</c>) can tell them apart.</summary>
    public const string ReasonPrefix = "optional native library missing: ";

    private static readonly Lazy<string?> s_zlib = new(() =>
    {
        try
        {
            ZlibNative.EnsureAvailable();
            return null;
        }
        catch (DllNotFoundException ex)
        {
            return ex.Message; // names the files tried and the package
        }
    });

    private static readonly Lazy<string?> s_sqlite = new(() => Probe(NativeLibraries.Sqlite, "SQLite", "libsqlite3-0"));

    private static readonly Lazy<string?> s_crypto = new(() => Probe(NativeLibraries.Crypto, "OpenSSL", "libssl3"));

    /// <summary>
    /// Why <paramref name="library"/> cannot be used on this machine (the files tried and the package to install), or
    /// <see langword="null"/> when it can.
    /// </summary>
    public static string? Problem(OptionalLibrary library) => library switch
    {
        OptionalLibrary.Mimalloc => MimallocAllocator.LoadProblem,
        OptionalLibrary.Zlib => s_zlib.Value,
        OptionalLibrary.Sqlite => s_sqlite.Value,
        OptionalLibrary.Crypto => s_crypto.Value,
        OptionalLibrary.RuntimeNative => Built(
            "libruntime_mem.so", "Runtime.Memory compiles native/openssl_route.c with gcc on Linux"),
        OptionalLibrary.CountingExtension => Built(
            "libcounting_ext.so", "the extension (samples/NativeExtension) is compiled with gcc on Linux"),
        _ => throw new ArgumentOutOfRangeException(nameof(library), library, null),
    };

    /// <summary>The optional library an allocator name needs (<c>mimalloc</c>, <c>mimalloc_debug</c>), or <see langword="null"/>.</summary>
    public static OptionalLibrary? NeededBy(string allocatorName) =>
        AllocatorNames.NeedsMimalloc(allocatorName) ? OptionalLibrary.Mimalloc : null;

    /// <summary>Skips the calling test, with the reason, when <paramref name="library"/> is missing.</summary>
    public static void SkipUnlessAvailable(OptionalLibrary library)
    {
        string? problem = Problem(library);
        Skip.If(problem is not null, ReasonPrefix + problem);
    }

    /// <summary>
    /// Skips the calling test, with the reason, when the backend of allocator name <paramref name="allocatorName"/> is
    /// missing (mimalloc's library, for the two mimalloc names); every other name runs.
    /// </summary>
    public static void SkipUnlessAvailable(string allocatorName)
    {
        if (NeededBy(allocatorName) is { } library)
        {
            SkipUnlessAvailable(library);
        }
    }

    /// <summary>Whether the backend of <paramref name="allocatorName"/> can be used here.</summary>
    public static bool IsAvailable(string allocatorName) => NeededBy(allocatorName) is not { } library || Problem(library) is null;

    /// <summary>The reason a library the system loader cannot find is missing, in the library's own words.</summary>
    private static string? Probe(string logicalName, string what, string package)
    {
        string[] candidates = NativeLibraries.CandidatesOf(logicalName);
        foreach (string candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, out nint handle))
            {
                NativeLibrary.Free(handle);
                return null;
            }
        }

        return $"{what} is not available: none of {string.Join(", ", candidates)} could be loaded. Install it (Debian: {package}).";
    }

    /// <summary>The reason a C library built with the solution is missing from the test's directory.</summary>
    private static string? Built(string file, string how)
    {
        string path = Path.Combine(AppContext.BaseDirectory, file);
        return File.Exists(path) ? null : $"{path} was not built: {how} (Debian: gcc; install it and rebuild).";
    }
}
