using Runtime.Memory.Extensions;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Extensions;

/// <summary>zlib (the system's libz.so.1) with its allocations routed into a domain and accounted under a tag.</summary>
public sealed unsafe class ZlibRoutingTests
{
    /// <summary>zlib's version string, read on first use (after the test has checked that zlib is there).</summary>
    private static readonly Lazy<byte[]> s_version = new(() => [.. System.Text.Encoding.ASCII.GetBytes(ZlibNative.EnsureAvailable()), 0]);

    private static byte[] Version => s_version.Value;

    /// <summary>4 MiB of text-like data: compressible, but not trivially.</summary>
    private static byte[] Data(int size)
    {
        var data = new byte[size];
        var random = new Random(7);
        string[] words = ["memory", "arena", "pool", "block", "domain", "zlib", "deflate", "inflate", "runtime", "hook"];
        int at = 0;
        while (at < size)
        {
            byte[] word = System.Text.Encoding.ASCII.GetBytes(words[random.Next(words.Length)] + (random.Next(5) == 0 ? "\n" : " "));
            int n = Math.Min(word.Length, size - at);
            Array.Copy(word, 0, data, at, n);
            at += n;
        }

        return data;
    }

    /// <summary>Compresses with one stream and decompresses with another, both routed; returns the zlib status of the first failure.</summary>
    private static int RoundTrip(ZlibRouting route, byte[] input, out byte[] output, Action? whileBothLive = null)
    {
        output = [];
        byte[] compressed = new byte[input.Length + 1024];
        var deflate = default(ZStream);
        var inflate = default(ZStream);
        route.Attach(&deflate);
        route.Attach(&inflate);
        fixed (byte* version = Version)
        fixed (byte* source = input)
        fixed (byte* packed = compressed)
        {
            int status = ZlibNative.DeflateInit2(&deflate, 6, ZlibNative.Deflated, 15, 8, 0, version, sizeof(ZStream));
            if (status != ZlibNative.Ok)
            {
                return status;
            }

            deflate.NextIn = source;
            deflate.AvailIn = (uint)input.Length;
            deflate.NextOut = packed;
            deflate.AvailOut = (uint)compressed.Length;
            status = ZlibNative.Deflate(&deflate, ZlibNative.Finish);
            int packedLength = (int)(compressed.Length - deflate.AvailOut);
            if (status != ZlibNative.StreamEnd)
            {
                ZlibNative.DeflateEnd(&deflate);
                return status;
            }

            status = ZlibNative.InflateInit2(&inflate, 15, version, sizeof(ZStream));
            if (status != ZlibNative.Ok)
            {
                ZlibNative.DeflateEnd(&deflate);
                return status;
            }

            whileBothLive?.Invoke();
            output = new byte[input.Length];
            fixed (byte* target = output)
            {
                inflate.NextIn = packed;
                inflate.AvailIn = (uint)packedLength;
                inflate.NextOut = target;
                inflate.AvailOut = (uint)output.Length;
                status = ZlibNative.Inflate(&inflate, ZlibNative.Finish);
            }

            Assert.Equal(ZlibNative.Ok, ZlibNative.DeflateEnd(&deflate));
            Assert.Equal(ZlibNative.Ok, ZlibNative.InflateEnd(&inflate));
            return status == ZlibNative.StreamEnd ? ZlibNative.Ok : status;
        }
    }

    [SkippableTheory]
    [InlineData(AllocatorNames.Malloc, MemoryDomainKind.Raw)]
    [InlineData(AllocatorNames.Pymalloc, MemoryDomainKind.Raw)]
    [InlineData(AllocatorNames.Pymalloc, MemoryDomainKind.Mem)]
    [InlineData(AllocatorNames.PymallocDebug, MemoryDomainKind.Raw)]
    public void A_4_MiB_round_trip_is_routed_and_accounted_and_nothing_is_live_after_the_ends(string allocator, MemoryDomainKind kind)
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Zlib);
        using RuntimeMemory runtime = TestRuntimes.Create(allocator);
        runtime.Debugger.OnViolation = ViolationAction.Throw;
        using var route = new ZlibRouting(runtime, kind);
        byte[] input = Data(4 << 20);
        long liveWhileStreams = 0, bytesWhileStreams = 0;

        int status = RoundTrip(route, input, out byte[] output, () =>
        {
            liveWhileStreams = route.Account.LiveBlocks;
            bytesWhileStreams = route.Account.LiveBytes;
            Assert.Equal(route.Account.LiveBlocks, runtime[kind].LiveBlocks); // everything zlib holds is in the domain
        });

        Assert.Equal(ZlibNative.Ok, status);
        Assert.Equal(input, output);
        Assert.InRange(liveWhileStreams, 6, 20);                  // deflate: state, window, prev, head, pending; inflate: state, window
        Assert.InRange(bytesWhileStreams, 256 * 1024, 2 << 20);   // about 268 KiB for deflate at level 6 + 7 KiB + 32 KiB for inflate
        Assert.Equal(bytesWhileStreams, route.Account.PeakBytes);
        Assert.Equal(0, route.Account.LiveBlocks);
        Assert.Equal(0, route.Account.LiveBytes);
        Assert.Equal(route.Account.Allocations, route.Account.Frees);
        Assert.Equal(0, runtime[kind].LiveBlocks);
        Assert.Same(route.Account, runtime.Tag("zlib"));
        Assert.Contains(route.Account, runtime.Tags);
        Assert.Equal(0, runtime.Debugger.Violations);
    }

    [SkippableFact]
    public void Every_allocation_failing_in_turn_gives_Z_MEM_ERROR_and_leaks_nothing()
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Zlib);
        byte[] input = Data(64 * 1024);
        int allocations;
        using (RuntimeMemory probe = TestRuntimes.Create(AllocatorNames.Pymalloc))
        using (var route = new ZlibRouting(probe))
        {
            Assert.Equal(ZlibNative.Ok, RoundTrip(route, input, out _));
            allocations = (int)route.Account.Allocations;
        }

        Assert.InRange(allocations, 6, 20);
        for (int i = 1; i <= allocations; i++)
        {
            using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
            var failing = new FailingAllocator();
            runtime.Raw.InstallHook(failing);
            failing.FailOnly(i);
            using var route = new ZlibRouting(runtime);

            int status = RoundTrip(route, input, out _);

            Assert.Equal(ZlibNative.MemError, status);
            Assert.Equal(1, route.Account.Failures);
            Assert.Equal(0, route.Account.LiveBlocks);
            Assert.Equal(0, runtime.Raw.LiveBlocks);
        }
    }

    [SkippableFact]
    public void EnsureAvailable_loads_the_system_zlib_and_returns_its_version()
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Zlib);
        Assert.StartsWith("1.", ZlibNative.EnsureAvailable());
        Assert.Contains("libz.so.1", Runtime.Memory.Platform.NativeLibraries.CandidatesOf(Runtime.Memory.Platform.NativeLibraries.Zlib));
    }
}
