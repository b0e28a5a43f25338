using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Extensions;

/// <summary>
/// The OpenSSL route. OpenSSL accepts an allocator only before its first allocation and only once per process, so the
/// route is installed in fresh child processes (samples/OpenSslRouting), whose output these tests read and check; the
/// C side's own paths that never reach OpenSSL are tested here, in process.
/// </summary>
public sealed unsafe partial class OpenSslRoutingTests
{
    private static readonly string Shim = Path.Combine(AppContext.BaseDirectory, "libruntime_mem.so");

    /// <summary>Skips (visibly) where the C part could not be built: not Linux, or no C compiler.</summary>
    private static void RequireShim() => OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.RuntimeNative);

    /// <summary>Skips (visibly) where the route cannot run: no C part, or no libcrypto.</summary>
    private static void RequireRoute()
    {
        RequireShim();
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Crypto);
    }

    [GeneratedRegex(@"^\[(?<stage>[^\]]+)\] allocations (?<allocations>[\d,]+), frees (?<frees>[\d,]+), live (?<live>[\d,]+) blocks / (?<bytes>[\d,]+) bytes, peak [\d,]+ bytes; \w+ domain: (?<domain>[\d,]+) live blocks$", RegexOptions.Multiline)]
    private static partial Regex StageLine();

    private sealed record Stage(long Allocations, long Frees, long Live, long Bytes, long DomainLive);

    private static Dictionary<string, Stage> Stages(string stdout)
    {
        static long N(Match m, string group) => long.Parse(m.Groups[group].Value, NumberStyles.AllowThousands, CultureInfo.InvariantCulture);
        return StageLine().Matches(stdout).ToDictionary(
            m => m.Groups["stage"].Value,
            m => new Stage(N(m, "allocations"), N(m, "frees"), N(m, "live"), N(m, "bytes"), N(m, "domain")));
    }

    [SkippableTheory]
    [InlineData("default", "raw")]
    [InlineData("malloc", "raw")]
    [InlineData("pymalloc_debug", "mem")]
    [InlineData("pymalloc", "obj")]
    public void Hashing_through_libcrypto_and_through_dotnet_is_routed_and_accounted_and_exiting_threads_free_into_the_runtime(string allocator, string domain)
    {
        RequireRoute();
        ChildProcess.Result run = ChildProcess.Run("OpenSslRouting", "demo", allocator, domain);

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        Assert.Contains($"routed into the {domain} domain of a '{allocator}' runtime under the tag 'openssl'", run.Stdout);
        Dictionary<string, Stage> stages = Stages(run.Stdout);
        Stage direct = stages["libcrypto EVP SHA-256 of 4 MiB"];
        Stage dotnet = stages[".NET SHA256, AES-CBC, HMAC"];
        Stage parked = stages["8 threads used crypto and are parked"];
        Stage exited = stages["the 8 threads exited"];

        Assert.True(direct.Allocations > 0, "libcrypto's own allocations reach the route");
        Assert.True(dotnet.Allocations > direct.Allocations, "System.Security.Cryptography's allocations in libcrypto reach the route");
        foreach (Stage stage in stages.Values)
        {
            Assert.Equal(stage.Allocations - stage.Frees, stage.Live); // after Flush, every free OpenSSL made is counted
            Assert.Equal(stage.Live, stage.DomainLive);                  // the domain holds exactly what OpenSSL holds
        }

        // The threads' OpenSSL state (per-thread DRBGs, error queues) is freed by a thread-exit destructor, where
        // managed code cannot run; those frees arrive through the C side's list and are accounted.
        Assert.Equal(parked.Allocations, exited.Allocations);
        Assert.True(exited.Frees - parked.Frees >= 8, $"frees at thread exit: {exited.Frees - parked.Frees}");
        Assert.True(exited.Live < parked.Live);
        Assert.Contains("ok: no OpenSSL allocation bypassed the runtime", run.Stdout);
        Assert.Contains("ok: a second install is refused: OpenSSL's allocator is already routed into the", run.Stdout);
        Assert.Contains("ok: no debug-hook violation", run.Stdout);

        // Disposing the runtime closed the route; OpenSSL went on with C library memory and exited cleanly (exit 0
        // above: OPENSSL_cleanup freed the remaining blocks at exit without entering managed code).
        Assert.Contains("ok: disposing the runtime closed the route", run.Stdout);
        Assert.Contains("ok: OpenSSL allocates from the C library once the route is closed", run.Stdout);
        Assert.Contains("ok: a runtime block freed after the close is left to the process's exit", run.Stdout);
        Assert.Contains("ok: nothing is pending after the close", run.Stdout);
        Assert.Contains("ok: OpenSSL's allocator functions are still the route's", run.Stdout);
        Assert.Contains("ok: a blank tag is refused", run.Stdout); // and the install that followed it worked
        Assert.DoesNotContain("FAILED", run.Stdout);
    }

    [SkippableFact]
    public void A_late_install_is_refused_with_the_reason_and_what_to_do()
    {
        RequireRoute();
        ChildProcess.Result run = ChildProcess.Run("OpenSslRouting", "late");

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        Assert.Contains("refused: CRYPTO_set_mem_functions refused the route: OpenSSL 3.", run.Stdout);
        Assert.Contains("has already allocated memory with its own allocator", run.Stdout);
        Assert.Contains("Install OpenSslRouting at the start of the process, before anything uses cryptography or TLS", run.Stdout);
    }

    [SkippableTheory]
    [InlineData("DOTNET_OPENSSL_MEMORY_DEBUG")]
    [InlineData("DOTNET_SYSTEM_NET_SECURITY_OPENSSL_MEMORY_DEBUG")]
    public void An_install_that_dotnet_would_replace_later_is_refused_and_dotnet_crypto_still_works(string variable)
    {
        RequireRoute();
        ChildProcess.Result run = ChildProcess.Run("OpenSslRouting", new Dictionary<string, string> { [variable] = "1" }, "foreign");

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        Assert.Contains($"refused: {variable} is set, so .NET's System.Security.Cryptography will install its own OpenSSL allocator", run.Stdout);
    }

    [GeneratedRegex(@"^allocation (?<i>\d+) of (?<n>\d+) failed: (?<failure>[^(]+) \((?<error>[^)]*)\); live blocks (?<live>\d+) \(baseline (?<baseline>\d+)\)", RegexOptions.Multiline)]
    private static partial Regex SweepLine();

    [SkippableFact]
    public void Every_allocation_failing_in_turn_gives_OpenSSLs_failure_return_and_leaks_nothing()
    {
        RequireRoute();
        ChildProcess.Result run = ChildProcess.Run("OpenSslRouting", "nomemory");

        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}\n{run.Stdout}\n{run.Stderr}");
        MatchCollection lines = SweepLine().Matches(run.Stdout);
        int n = int.Parse(lines[0].Groups["n"].Value, CultureInfo.InvariantCulture);
        Assert.InRange(n, 20, 500); // a digest, a cipher and a 2048-bit modular exponentiation
        Assert.Equal(n, lines.Count);
        for (int i = 0; i < n; i++)
        {
            Match line = lines[i];
            Assert.Equal(i + 1, int.Parse(line.Groups["i"].Value, CultureInfo.InvariantCulture));
            Assert.Matches("returned (NULL|0)$", line.Groups["failure"].Value); // OpenSSL's own failure return
            Assert.Equal(line.Groups["baseline"].Value, line.Groups["live"].Value);
        }

        Assert.Contains("malloc failure", run.Stdout); // and OpenSSL's error queue names the cause
        Assert.Contains($"failures: {n};", run.Stdout);
    }

    // ---- the C side without OpenSSL: this process never installs the route, so the shim stays unbound -------------

    private const ulong LibcMark = 0xC1B0C1B0C1B0C1B6UL;

    [SkippableFact]
    public void Unbound_the_c_side_serves_from_the_c_library_with_realloc_and_free_semantics()
    {
        RequireShim();
        long before = (long)Shared()->LibcBlocks;

        byte* p = (byte*)rtmem_openssl_malloc(100, null, 0);
        Assert.True(p != null);
        Assert.Equal(0, (nint)p % 16);
        Assert.Equal(100UL, *(ulong*)(p - 16));      // the prefix: size ...
        Assert.Equal(LibcMark, *(ulong*)(p - 8));    // ... and the C library's mark
        for (int i = 0; i < 100; i++)
        {
            p[i] = (byte)i;
        }

        byte* q = (byte*)rtmem_openssl_realloc(p, 100_000, null, 0);
        Assert.True(q != null);
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal((byte)i, q[i]);
        }

        Assert.Equal(100_000UL, *(ulong*)(q - 16));
        Assert.True(rtmem_openssl_realloc(q, 0, null, 0) == null);                                // realloc(p, 0) frees, returns NULL
        rtmem_openssl_free(null, null, 0);                                                        // free(NULL) does nothing
        byte* r = (byte*)rtmem_openssl_realloc(null, 32, null, 0);                                // realloc(NULL, n) is malloc
        Assert.True(r != null);
        rtmem_openssl_free(r, null, 0);
        Assert.True(rtmem_openssl_malloc(nuint.MaxValue - 8, null, 0) == null);                  // no overflow
        Assert.Equal(before + 2, (long)Shared()->LibcBlocks);
        Assert.Equal(0UL, Shared()->DeferredFrees);
    }

    [SkippableFact]
    public void The_c_side_refuses_a_bind_without_functions()
    {
        RequireShim();
        Assert.Equal(-1, rtmem_openssl_bind(null, null));
        Assert.Equal(0, Shared()->State); // still unbound
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct SharedState
    {
        public nint Deferred;
        public ulong DeferredFrees;
        public ulong LibcBlocks;
        public ulong DroppedFrees;
        public int State;
        public int Inflight;
        public nint ManagedMalloc;
        public nint ManagedRealloc;
    }

    /// <summary>The C side's exports, by address (this process never routes OpenSSL, so these stay unbound).</summary>
    private static class C
    {
        private static readonly nint Handle = NativeLibrary.Load(Shim);

        public static readonly delegate* unmanaged<nuint, byte*, int, void*> Malloc = (delegate* unmanaged<nuint, byte*, int, void*>)Export("rtmem_openssl_malloc");
        public static readonly delegate* unmanaged<void*, nuint, byte*, int, void*> Realloc = (delegate* unmanaged<void*, nuint, byte*, int, void*>)Export("rtmem_openssl_realloc");
        public static readonly delegate* unmanaged<void*, byte*, int, void> Free = (delegate* unmanaged<void*, byte*, int, void>)Export("rtmem_openssl_free");
        public static readonly delegate* unmanaged<void*, void*, int> Bind = (delegate* unmanaged<void*, void*, int>)Export("rtmem_openssl_bind");
        public static readonly delegate* unmanaged<SharedState*> State = (delegate* unmanaged<SharedState*>)Export("rtmem_openssl_state_get");

        private static nint Export(string name) => NativeLibrary.GetExport(Handle, name);
    }

    private static SharedState* Shared() => C.State();

    private static void* rtmem_openssl_malloc(nuint size, byte* file, int line) => C.Malloc(size, file, line);

    private static void* rtmem_openssl_realloc(void* ptr, nuint size, byte* file, int line) => C.Realloc(ptr, size, file, line);

    private static void rtmem_openssl_free(void* ptr, byte* file, int line) => C.Free(ptr, file, line);

    private static int rtmem_openssl_bind(void* malloc, void* realloc) => C.Bind(malloc, realloc);
}
