// OpenSslRouting: OpenSSL's libcrypto with every allocation routed into the runtime's raw domain
// (CRYPTO_set_mem_functions) and accounted under the tag "openssl": hashing through libcrypto directly and through
// .NET's own System.Security.Cryptography, then threads that use crypto and exit (OpenSSL frees their state from a
// thread-exit destructor, where managed code cannot run: the route's free function is C).
//
//   dotnet run --project samples/OpenSslRouting              the demonstration (raw domain, allocator "default")
//   dotnet run --project samples/OpenSslRouting -- demo pymalloc_debug mem     the same in another allocator / domain
//   dotnet run --project samples/OpenSslRouting -- late      installing after .NET has used OpenSSL is refused
//   DOTNET_OPENSSL_MEMORY_DEBUG=1 dotnet run --project samples/OpenSslRouting -- foreign   .NET's own hooks: refused
//   dotnet run --project samples/OpenSslRouting -- nomemory  every allocation of a digest, cipher and BIGNUM run failing in turn

using System.Globalization;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Runtime.Memory;
using Runtime.Memory.Extensions;
using Runtime.Memory.Hosting;
using Runtime.Memory.Testing;
using Runtime.Memory.Extensions.OpenSsl;
using Runtime.Memory.Accounting;
using Runtime.Memory.Allocators;

CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;
string mode = args.Length > 0 ? args[0] : "demo";
return mode switch
{
    "demo" => Demo.Run(args.Length > 1 ? args[1] : AllocatorNames.Default, args.Length > 2 ? Enum.Parse<MemoryDomainKind>(args[2], ignoreCase: true) : MemoryDomainKind.Raw),
    "late" => Demo.Late(),
    "nomemory" => Demo.NoMemory(),
    "foreign" => Demo.Foreign(),
    _ => Usage(mode),
};

static int Usage(string mode)
{
    Console.Error.WriteLine($"unknown mode '{mode}': use no argument, 'demo [allocator] [domain]', 'late', 'foreign' or 'nomemory'");
    return 2;
}

internal static unsafe class Demo
{
    public static int Run(string allocator, MemoryDomainKind domain)
    {
        RuntimeMemory runtime = RuntimeMemory.Create(new RuntimeMemoryOptions { Allocator = allocator });
        bool ok = true;
        try
        {
            OpenSslRouting.Install(runtime, domain, tag: " "); // a bad argument is refused before OpenSSL is touched
            ok &= Expect(false, "a blank tag is refused");
        }
        catch (ArgumentException ex)
        {
            ok &= Expect(true, $"a blank tag is refused: {ex.Message}");
        }

        OpenSslRouting route = OpenSslRouting.Install(runtime, domain); // first: before anything touches OpenSSL
        Console.WriteLine($"{route.LibraryVersion} routed into the {route.Domain.Name} domain of a '{allocator}' runtime under the tag '{route.Account.Tag}'");
        ok &= Expect(route.IsInstalledInOpenSsl, "OpenSSL's allocator functions are the route's");
        using (RuntimeMemory other = RuntimeMemory.Create())
        {
            try
            {
                OpenSslRouting.Install(other);
                ok &= Expect(false, "a second install is refused");
            }
            catch (InvalidOperationException ex)
            {
                ok &= Expect(true, $"a second install is refused: {ex.Message}");
            }
        }

        byte[] data = new byte[4 << 20];
        new Random(42).NextBytes(data);
        byte[] direct = Crypto.Sha256(data);
        Print("libcrypto EVP SHA-256 of 4 MiB", route, runtime);
        long afterDirect = route.Account.Allocations;
        ok &= Expect(afterDirect > 0, "libcrypto's own calls were routed");

        byte[] managed = SHA256.HashData(data);
        ok &= Expect(managed.AsSpan().SequenceEqual(direct), "System.Security.Cryptography computes the same digest");
        using (var aes = Aes.Create())
        {
            aes.Key = SHA256.HashData("key"u8);
            byte[] sealedText = aes.EncryptCbc(data.AsSpan(0, 1 << 16), new byte[16]);
            ok &= Expect(aes.DecryptCbc(sealedText, new byte[16]).AsSpan().SequenceEqual(data.AsSpan(0, 1 << 16)), "AES round trip");
        }

        HMACSHA256.HashData(data, data.AsSpan(0, 64));
        Print(".NET SHA256, AES-CBC, HMAC", route, runtime);
        ok &= Expect(route.Account.Allocations > afterDirect, ".NET's System.Security.Cryptography allocated through the route");

        ok &= Threads(route, runtime, threads: 8);
        ok &= Expect(route.CLibraryAllocations == 0, "no OpenSSL allocation bypassed the runtime");
        ok &= Expect(route.Account.LiveBlocks == runtime[domain].LiveBlocks, $"the {route.Domain.Name} domain holds exactly what OpenSSL holds");
        ok &= Expect(runtime.Debugger.Violations == 0, "no debug-hook violation");

        // Disposing the runtime closes the route: OpenSSL keeps working on the C library's memory, the blocks it still
        // holds stay valid, and OPENSSL_cleanup frees them at exit without entering managed code.
        ok &= Expect(route.IsInstalledInOpenSsl, "OpenSSL's allocator functions are still the route's");
        nint heldAcrossClose = Crypto.NewDigestContext(); // a runtime block that OpenSSL frees after the close
        runtime.Dispose();
        ok &= Expect(route.IsClosed && OpenSslRouting.Current == null, "disposing the runtime closed the route");
        Crypto.FreeDigestContext(heldAcrossClose);
        SHA256.HashData(data);
        Console.WriteLine($"[after the runtime was disposed] {route}");
        ok &= Expect(route.CLibraryAllocations > 0, "OpenSSL allocates from the C library once the route is closed");
        ok &= Expect(route.DroppedFrees >= 1, "a runtime block freed after the close is left to the process's exit");
        ok &= Expect(route.Flush() == 0 && route.PendingFrees == 0, "nothing is pending after the close");
        Console.WriteLine(ok ? "all checks passed" : "A CHECK FAILED");
        return ok ? 0 : 1;
    }

    /// <summary>Threads use libcrypto and .NET crypto, park, then exit: their OpenSSL state is freed as they die.</summary>
    private static bool Threads(OpenSslRouting route, RuntimeMemory runtime, int threads)
    {
        using var parked = new CountdownEvent(threads);
        using var release = new ManualResetEventSlim();
        var workers = new Thread[threads];
        for (int i = 0; i < threads; i++)
        {
            workers[i] = new Thread(() =>
            {
                byte* random = stackalloc byte[32];
                Crypto.RandBytes(random, 32);                    // a per-thread DRBG pair in OpenSSL
                RandomNumberGenerator.Fill(new byte[32]);
                SHA256.HashData(new byte[1024]);
                parked.Signal();
                release.Wait();
            });
            workers[i].Start();
        }

        parked.Wait();
        route.Flush();
        long whileAlive = route.Account.LiveBlocks;
        Print($"{threads} threads used crypto and are parked", route, runtime);
        long deferredBefore = route.Account.Frees + route.PendingFrees;

        release.Set();
        foreach (Thread worker in workers)
        {
            worker.Join();
        }

        // Join returns when the managed thread is done; OpenSSL's destructor runs a little later, as the OS thread
        // ends. Take frees back until none has arrived for half a second.
        var quiet = System.Diagnostics.Stopwatch.StartNew();
        var total = System.Diagnostics.Stopwatch.StartNew();
        long seen = route.Account.Frees;
        while (quiet.ElapsedMilliseconds < 500 && total.Elapsed < TimeSpan.FromSeconds(10))
        {
            Thread.Sleep(20);
            route.Flush();
            if (route.Account.Frees != seen)
            {
                seen = route.Account.Frees;
                quiet.Restart();
            }
        }

        long atExit = route.Account.Frees - deferredBefore;
        Print($"the {threads} threads exited", route, runtime);
        Console.WriteLine($"frees made by OpenSSL as the threads exited: {atExit} (taken back from the C side's list)");
        return Expect(route.Account.LiveBlocks < whileAlive && atExit >= threads, "the exiting threads' OpenSSL state was freed into the runtime");
    }

    /// <summary>With .NET's OpenSSL memory debugging switched on, .NET would replace the route later: refused at once.</summary>
    public static int Foreign()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        try
        {
            OpenSslRouting.Install(runtime);
            Console.WriteLine("the install was accepted");
            return 1;
        }
        catch (InvalidOperationException ex)
        {
            Console.WriteLine($"refused: {ex.Message}");
            SHA256.HashData("and .NET's crypto still works"u8);
            return 0;
        }
    }

    /// <summary>Installing after .NET has used OpenSSL is reported, not ignored.</summary>
    public static int Late()
    {
        SHA256.HashData("OpenSSL allocates with its own allocator now"u8);
        using RuntimeMemory runtime = RuntimeMemory.Create();
        try
        {
            OpenSslRouting.Install(runtime);
            Console.WriteLine("the late install was accepted");
            return 1;
        }
        catch (InvalidOperationException ex)
        {
            Console.WriteLine($"refused: {ex.Message}");
            return 0;
        }
    }

    /// <summary>
    /// With a failing fake on raw, allocation number i of one digest, cipher and BIGNUM run fails, for every i up to the run's
    /// allocation count: every run ends with OpenSSL's failure return, and no block is left live.
    /// </summary>
    public static int NoMemory()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        var failing = new FailingAllocator();
        runtime.Raw.InstallHook(failing);
        OpenSslRouting route = OpenSslRouting.Install(runtime);

        // Warm-up: OpenSSL's one-time state (providers, fetched algorithms, the thread's error queue, error strings).
        for (int i = 0; i < 2; i++)
        {
            if (Crypto.DigestAndCipher() != null)
            {
                Console.WriteLine("warm-up run failed");
                return 1;
            }
        }

        Crypto.ErrorText();
        route.Flush();
        long baseline = route.Account.LiveBlocks;

        failing.ResetCount();
        string? clean = Crypto.DigestAndCipher();
        long allocations = failing.Requests;
        route.Flush();
        Console.WriteLine($"one run: {allocations} allocations, {(clean ?? "succeeded")}; live blocks {route.Account.LiveBlocks} (baseline {baseline})");
        bool ok = clean == null && route.Account.LiveBlocks == baseline && allocations > 0;
        for (long i = 1; i <= allocations; i++)
        {
            failing.ResetCount().FailOnly(i);
            string? failure = Crypto.DigestAndCipher();
            failing.FailNever();
            string error = Crypto.ErrorText();
            route.Flush();
            long live = route.Account.LiveBlocks;
            bool good = failure != null && live == baseline;
            ok &= good;
            Console.WriteLine($"allocation {i} of {allocations} failed: {failure ?? "NO FAILURE REPORTED"} ({error}); live blocks {live} (baseline {baseline}){(good ? "" : "  <-- WRONG")}");
        }

        Console.WriteLine($"failures: {route.Account.Failures}; {(ok ? "all checks passed" : "A CHECK FAILED")}");
        return ok ? 0 : 1;
    }

    private static void Print(string stage, OpenSslRouting route, RuntimeMemory runtime)
    {
        route.Flush();
        LibraryAccount a = route.Account;
        Console.WriteLine($"[{stage}] allocations {a.Allocations:N0}, frees {a.Frees:N0}, live {a.LiveBlocks:N0} blocks / {a.LiveBytes:N0} bytes, peak {a.PeakBytes:N0} bytes; {route.Domain.Name} domain: {route.Domain.LiveBlocks:N0} live blocks");
    }

    private static bool Expect(bool condition, string what)
    {
        Console.WriteLine($"{(condition ? "ok" : "FAILED")}: {what}");
        return condition;
    }
}

/// <summary>The few libcrypto calls the sample makes itself.</summary>
internal static unsafe partial class Crypto
{
    private const string Lib = "libcrypto.so.3";

    public static byte[] Sha256(byte[] data)
    {
        byte[] digest = new byte[32];
        nint ctx = EVP_MD_CTX_new();
        fixed (byte* input = data)
        fixed (byte* output = digest)
        {
            uint length;
            Check(ctx != 0 && EVP_DigestInit_ex(ctx, EVP_sha256(), 0) == 1 && EVP_DigestUpdate(ctx, input, (nuint)data.Length) == 1
                  && EVP_DigestFinal_ex(ctx, output, &length) == 1, "EVP SHA-256");
        }

        EVP_MD_CTX_free(ctx);
        return digest;
    }

    public static nint NewDigestContext()
    {
        nint ctx = EVP_MD_CTX_new();
        Check(ctx != 0, "EVP_MD_CTX_new");
        return ctx;
    }

    public static void FreeDigestContext(nint ctx) => EVP_MD_CTX_free(ctx);

    public static void RandBytes(byte* buffer, int count) => Check(RAND_bytes(buffer, count) == 1, "RAND_bytes");

    private static nint s_sha256;
    private static nint s_aes256gcm;

    /// <summary>
    /// A SHA-256 digest, an AES-256-GCM encryption and a BIGNUM modular exponentiation, with algorithms fetched once (as OpenSSL 3 recommends: an implicit
    /// fetch such as <c>EVP_sha256()</c> looks the name up on every init); null on success, else the call that failed.
    /// </summary>
    public static string? DigestAndCipher()
    {
        if (s_sha256 == 0)
        {
            s_sha256 = EVP_MD_fetch(0, "SHA256", null);
            s_aes256gcm = EVP_CIPHER_fetch(0, "AES-256-GCM", null);
            if (s_sha256 == 0 || s_aes256gcm == 0)
            {
                return "EVP_MD_fetch/EVP_CIPHER_fetch returned NULL";
            }
        }

        byte* data = stackalloc byte[4096];
        byte* output = stackalloc byte[4096 + 64];
        byte* key = stackalloc byte[32];
        byte* iv = stackalloc byte[12];
        for (int i = 0; i < 4096; i++)
        {
            data[i] = (byte)i;
        }

        nint md = EVP_MD_CTX_new();
        if (md == 0)
        {
            return "EVP_MD_CTX_new returned NULL";
        }

        try
        {
            uint length;
            if (EVP_DigestInit_ex(md, s_sha256, 0) != 1)
            {
                return "EVP_DigestInit_ex returned 0";
            }

            if (EVP_DigestUpdate(md, data, 4096) != 1 || EVP_DigestFinal_ex(md, output, &length) != 1)
            {
                return "EVP_DigestUpdate/Final returned 0";
            }
        }
        finally
        {
            EVP_MD_CTX_free(md);
        }

        nint cipher = EVP_CIPHER_CTX_new();
        if (cipher == 0)
        {
            return "EVP_CIPHER_CTX_new returned NULL";
        }

        try
        {
            int written, last;
            if (EVP_EncryptInit_ex(cipher, s_aes256gcm, 0, key, iv) != 1)
            {
                return "EVP_EncryptInit_ex returned 0";
            }

            if (EVP_EncryptUpdate(cipher, output, &written, data, 4096) != 1 || EVP_EncryptFinal_ex(cipher, output + written, &last) != 1)
            {
                return "EVP_EncryptUpdate/Final returned 0";
            }
        }
        finally
        {
            EVP_CIPHER_CTX_free(cipher);
        }

        return ModExp();
    }

    /// <summary>(2^2047 + 12345)^65537 mod (2^2048 - 159) with BIGNUMs: a BN_CTX, numbers growing, a Montgomery context.</summary>
    private static string? ModExp()
    {
        nint ctx = BN_CTX_new(), a = BN_new(), e = BN_new(), m = BN_new(), r = BN_new();
        try
        {
            if (ctx == 0 || a == 0 || e == 0 || m == 0 || r == 0)
            {
                return "BN_CTX_new/BN_new returned NULL";
            }

            if (BN_set_word(a, 1) != 1 || BN_lshift(a, a, 2047) != 1 || BN_add_word(a, 12345) != 1
                || BN_set_word(e, 65537) != 1
                || BN_set_word(m, 1) != 1 || BN_lshift(m, m, 2048) != 1 || BN_sub_word(m, 159) != 1)
            {
                return "BN_set_word/BN_lshift/BN_add_word returned 0";
            }

            return BN_mod_exp(r, a, e, m, ctx) == 1 && BN_num_bits(r) > 0 ? null : "BN_mod_exp returned 0";
        }
        finally
        {
            BN_free(r);
            BN_free(m);
            BN_free(e);
            BN_free(a);
            BN_CTX_free(ctx);
        }
    }

    /// <summary>The oldest queued OpenSSL error as text ("none" when the queue is empty), and the queue cleared.</summary>
    public static string ErrorText()
    {
        nuint code = ERR_get_error();
        byte* text = stackalloc byte[256];
        string result = "none";
        if (code != 0)
        {
            ERR_error_string_n(code, text, 256);
            result = Marshal.PtrToStringUTF8((nint)text)!;
        }
        else
        {
            ERR_error_string_n(0x0680_0041, text, 256); // loads the error strings once (the warm-up's call)
        }

        ERR_clear_error();
        return result;
    }

    private static void Check(bool ok, string what)
    {
        if (!ok)
        {
            throw new InvalidOperationException($"{what} failed: {ErrorText()}");
        }
    }

    [LibraryImport(Lib)] private static partial nint EVP_MD_CTX_new();
    [LibraryImport(Lib)] private static partial void EVP_MD_CTX_free(nint ctx);
    [LibraryImport(Lib)] private static partial nint EVP_sha256();
    [LibraryImport(Lib)] private static partial int EVP_DigestInit_ex(nint ctx, nint type, nint engine);
    [LibraryImport(Lib)] private static partial int EVP_DigestUpdate(nint ctx, void* data, nuint count);
    [LibraryImport(Lib)] private static partial int EVP_DigestFinal_ex(nint ctx, byte* md, uint* size);
    [LibraryImport(Lib)] private static partial nint EVP_CIPHER_CTX_new();
    [LibraryImport(Lib)] private static partial void EVP_CIPHER_CTX_free(nint ctx);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] private static partial nint EVP_MD_fetch(nint libraryContext, string algorithm, string? properties);
    [LibraryImport(Lib, StringMarshalling = StringMarshalling.Utf8)] private static partial nint EVP_CIPHER_fetch(nint libraryContext, string algorithm, string? properties);
    [LibraryImport(Lib)] private static partial int EVP_EncryptInit_ex(nint ctx, nint cipher, nint engine, byte* key, byte* iv);
    [LibraryImport(Lib)] private static partial int EVP_EncryptUpdate(nint ctx, byte* output, int* written, byte* input, int count);
    [LibraryImport(Lib)] private static partial int EVP_EncryptFinal_ex(nint ctx, byte* output, int* written);
    [LibraryImport(Lib)] private static partial nint BN_CTX_new();
    [LibraryImport(Lib)] private static partial void BN_CTX_free(nint ctx);
    [LibraryImport(Lib)] private static partial nint BN_new();
    [LibraryImport(Lib)] private static partial void BN_free(nint n);
    [LibraryImport(Lib)] private static partial int BN_set_word(nint n, nuint word);
    [LibraryImport(Lib)] private static partial int BN_add_word(nint n, nuint word);
    [LibraryImport(Lib)] private static partial int BN_sub_word(nint n, nuint word);
    [LibraryImport(Lib)] private static partial int BN_lshift(nint r, nint a, int bits);
    [LibraryImport(Lib)] private static partial int BN_num_bits(nint n);
    [LibraryImport(Lib)] private static partial int BN_mod_exp(nint r, nint a, nint p, nint m, nint ctx);
    [LibraryImport(Lib)] private static partial int RAND_bytes(byte* buffer, int count);
    [LibraryImport(Lib)] private static partial nuint ERR_get_error();
    [LibraryImport(Lib)] private static partial void ERR_error_string_n(nuint code, byte* buffer, nuint length);
    [LibraryImport(Lib)] private static partial void ERR_clear_error();
}
