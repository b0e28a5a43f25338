using System.Reflection;
using System.Runtime.InteropServices;
using Runtime.Memory.Platform;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Allocators;

/// <summary>
/// The system allocator over the C library's functions, imported directly (<see cref="CHeap"/>): failures are null
/// returns, not exceptions, and the contract holds on both sides of <see cref="SystemAllocator.ShortCallLimit"/>
/// (calls without the GC transition below it) and of glibc's mmap threshold (128 KiB).
/// </summary>
public sealed unsafe class SystemAllocatorCHeapTests
{
    private const nuint Short = SystemAllocator.ShortSizeLimit;
    private const nuint Mapped = 256 * 1024; // above glibc's default M_MMAP_THRESHOLD: a mapping of its own

    private readonly SystemAllocator _allocator = new();

    /// <summary>Sizes either side of the transition limit and of the mmap threshold.</summary>
    public static TheoryData<ulong> Sizes => new() { 0, 1, 15, 16, 17, 100, Short - 1, Short, Short + 1, 1032, 4096, 128 * 1024 - 17, 128 * 1024, Mapped, 1024 * 1024 };

    /// <summary>Sizes no C heap can serve, though the allocator accepts them (at most <see cref="SystemAllocator.MaxSize"/>).</summary>
    public static TheoryData<ulong> Impossible => new() { 1UL << 50, 1UL << 62, SystemAllocator.MaxSize };

    [Theory]
    [MemberData(nameof(Impossible))]
    public void Impossible_sizes_return_null_without_throwing(ulong size)
    {
        void* p = (void*)1;
        Assert.Null(Record.Exception(() => p = _allocator.Malloc((nuint)size)));
        Assert.True(p == null);
        Assert.Null(Record.Exception(() => p = _allocator.Calloc(1, (nuint)size)));
        Assert.True(p == null);
        Assert.Null(Record.Exception(() => p = _allocator.Realloc(null, (nuint)size)));
        Assert.True(p == null);
    }

    [Theory]
    [InlineData(16UL)]
    [InlineData((ulong)SystemAllocator.ShortSizeLimit)]
    [InlineData((ulong)SystemAllocator.ShortSizeLimit + 1)]
    [InlineData(256UL * 1024)]
    public void A_failed_realloc_leaves_the_block_as_it_was(ulong size)
    {
        void* p = _allocator.Malloc((nuint)size);
        Assert.True(p != null);
        Blocks.Fill(p, (nuint)size, 7);
        foreach (nuint huge in new[] { (nuint)1 << 62, SystemAllocator.MaxSize })
        {
            void* q = (void*)1;
            Assert.Null(Record.Exception(() => q = _allocator.Realloc(p, huge)));
            Assert.True(q == null);
            Assert.Equal((nuint)size, _allocator.BlockSize(p));
            Assert.True(Blocks.Holds(p, (nuint)size, 7));
        }

        p = _allocator.Realloc(p, (nuint)size + 1); // still a valid block of this allocator
        Assert.True(p != null && Blocks.Holds(p, (nuint)size, 7));
        _allocator.Free(p);
    }

    [Fact]
    public void Calloc_overflow_and_oversize_return_null()
    {
        Assert.True(_allocator.Calloc(nuint.MaxValue, 2) == null);
        Assert.True(_allocator.Calloc((nuint)1 << 32, (nuint)1 << 32) == null);
        Assert.True(_allocator.Calloc(2, SystemAllocator.MaxSize / 2 + 1) == null); // no overflow, but above MaxSize
        Assert.True(_allocator.Calloc(SystemAllocator.MaxSize, 1) == null); // accepted, refused by the C heap
        Assert.True(_allocator.Calloc((nuint)1 << 31, (nuint)1 << 31) == null);
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void Blocks_are_aligned_and_sized_as_requested_on_every_path(ulong size)
    {
        nuint n = (nuint)size;
        void* m = _allocator.Malloc(n);
        void* c = _allocator.Calloc(1, n);
        void* r = _allocator.Realloc(null, n);
        foreach (nuint p in new[] { (nuint)m, (nuint)c, (nuint)r })
        {
            Assert.True(p != 0 && Blocks.IsAligned((void*)p));
            Assert.Equal(n, _allocator.BlockSize((void*)p));
        }

        Assert.True(Blocks.IsZero(c, n));
        Blocks.Fill(m, n, 3); // the whole block is writable
        Assert.True(Blocks.Holds(m, n, 3));
        _allocator.Free(m);
        _allocator.Free(c);
        _allocator.Free(r);
    }

    [Theory]
    [MemberData(nameof(Sizes))]
    public void Calloc_zeroes_recycled_memory(ulong size)
    {
        nuint n = (nuint)size;
        for (int i = 0; i < 4; i++)
        {
            void* dirty = _allocator.Malloc(n);
            new Span<byte>(dirty, (int)n).Fill(0xA5);
            _allocator.Free(dirty);
            void* c = _allocator.Calloc(1, n);
            Assert.True(c != null && Blocks.IsZero(c, n));
            _allocator.Free(c);
        }
    }

    [Fact]
    public void Realloc_across_the_limits_both_ways_keeps_size_and_contents()
    {
        // Up and down across the transition limit and the mmap threshold; each step keeps the bytes both sizes
        // share, and the header (what Free decides by) says the new size.
        nuint[] steps = [24, Short + 1, Short, Mapped, 8, 200 * 1024, Short + 1, 1000, 1024 * 1024, Short, 0, Mapped];
        void* p = _allocator.Malloc(steps[0]);
        Blocks.Fill(p, steps[0], 11);
        for (int i = 1; i < steps.Length; i++)
        {
            nuint kept = Math.Min(steps[i - 1], steps[i]);
            p = _allocator.Realloc(p, steps[i]);
            Assert.True(p != null && Blocks.IsAligned(p));
            Assert.Equal(steps[i], _allocator.BlockSize(p));
            Assert.True(Blocks.Holds(p, kept, 11), $"step {i}: {steps[i - 1]} -> {steps[i]}");
            Blocks.Fill(p, steps[i], 11);
        }

        _allocator.Free(p);
    }

    [Fact]
    public void Short_calls_coexist_with_collections_on_other_threads()
    {
        // The imports without the GC transition keep the thread in cooperative mode during the call: collections
        // forced meanwhile must neither hang nor disturb the blocks. A fixed number of collections, with pauses, so
        // that the test takes a bounded time and leaves the tests running beside it alone.
        const int Workers = 3;
        int started = 0;
        int done = 0;
        var errors = new System.Collections.Concurrent.ConcurrentQueue<Exception>();
        var threads = Enumerable.Range(0, Workers).Select(_ => new Thread(() =>
        {
            try
            {
                Interlocked.Increment(ref started);
                var live = new nint[64];
                for (int i = 0; Volatile.Read(ref done) == 0 || i < 10_000; i++)
                {
                    int k = i % live.Length;
                    nuint size = (nuint)(k * 37 % 1500); // both sides of the limit
                    if (live[k] != 0)
                    {
                        Assert.Equal(size, _allocator.BlockSize((void*)live[k]));
                        _allocator.Free((void*)live[k]);
                    }

                    live[k] = (nint)(i % 3 == 0 ? _allocator.Calloc(1, size) : _allocator.Malloc(size));
                    Assert.True(live[k] != 0);
                }

                foreach (nint p in live)
                {
                    _allocator.Free((void*)p);
                }
            }
            catch (Exception e)
            {
                errors.Enqueue(e);
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        SpinWait.SpinUntil(() => Volatile.Read(ref started) == Workers);
        for (int c = 0; c < 40; c++)
        {
            GC.Collect(c % 4 == 0 ? 2 : 0);
            Thread.Sleep(1);
        }

        Volatile.Write(ref done, 1);
        threads.ForEach(t => t.Join());
        Assert.Empty(errors);
    }

    [Fact]
    public void Only_the_short_imports_skip_the_GC_transition()
    {
        var imports = typeof(CHeap).GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly)
            .Where(m => (m.Attributes & MethodAttributes.PinvokeImpl) != 0)
            .ToDictionary(m => m.Name, m => m.GetCustomAttribute<SuppressGCTransitionAttribute>() is not null);
        Assert.Equal(8, imports.Count);
        Assert.All(imports, i => Assert.Equal(i.Key.EndsWith("Short", StringComparison.Ordinal), i.Value));

        // Within glibc's per-thread cache on 64-bit (requests of up to 1,032 bytes), as the remarks say.
        Assert.True(SystemAllocator.ShortCallLimit <= 1032);
        Assert.Equal(SystemAllocator.ShortCallLimit - SystemAllocator.HeaderSize, SystemAllocator.ShortSizeLimit);
    }
}
