using System.Runtime.InteropServices;
using Runtime.Memory.Interop;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Interop;

/// <summary>
/// The C ABI driven from C# through its function pointers, exactly as C calls it: the table, the domains' memory
/// functions, the get / set round trip, native allocators, arena allocators, and the rule that nothing throws into C.
/// </summary>
public sealed unsafe class NativeApiTests
{
    [Fact]
    public void The_table_says_which_abi_and_how_big_it_is()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        RtMemApi* api = runtime.NativeApi;
        Assert.Equal(1u, api->AbiVersion);
        Assert.Equal((uint)sizeof(RtMemApi), api->Size);
        Assert.Equal(2 * sizeof(uint) + 15 * sizeof(nint), sizeof(RtMemApi)); // two uint32, the runtime, fourteen functions (trace_track and trace_untrack appended)
        Assert.True(api == runtime.NativeApi, "one table per runtime");
    }

    [SkippableTheory]
    [ClassData(typeof(AllAllocatorsAndDomains))]
    public void Memory_functions_reach_the_domain_with_its_guarantees_and_accounting(string allocator, MemoryDomainKind kind)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        using RuntimeMemory runtime = TestRuntimes.Create(allocator);
        RtMemApi* api = runtime.NativeApi;
        int d = (int)kind;
        byte* p = (byte*)api->Malloc(api->Runtime, d, 100);
        Assert.True(p != null && Blocks.IsAligned(p));
        Blocks.Fill(p, 100, 3);
        byte* z = (byte*)api->Calloc(api->Runtime, d, 10, 10);
        Assert.True(Blocks.IsZero(z, 100));
        p = (byte*)api->Realloc(api->Runtime, d, p, 300);
        Assert.True(Blocks.Holds(p, 100, 3));
        Assert.Equal(2, api->LiveBlocks(api->Runtime, d));
        Assert.Equal(runtime[kind].GetStatistics().LiveBytes, api->LiveBytes(api->Runtime, d));

        Assert.True(api->Malloc(api->Runtime, d, (nuint)nint.MaxValue + 1) == null);
        Assert.True(api->Calloc(api->Runtime, d, nuint.MaxValue, 2) == null);
        void* zero = api->Malloc(api->Runtime, d, 0);
        Assert.True(zero != null);
        api->Free(api->Runtime, d, zero);
        api->Free(api->Runtime, d, null);
        api->Free(api->Runtime, d, p);
        api->Free(api->Runtime, d, z);
        Assert.Equal(0, api->LiveBlocks(api->Runtime, d));
    }

    [Fact]
    public void Bad_arguments_give_null_or_einval_never_a_crash()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Malloc);
        RtMemApi* api = runtime.NativeApi;
        RtMemAllocator a;
        Assert.True(api->Malloc(api->Runtime, 3, 16) == null);
        Assert.True(api->Malloc(api->Runtime, -1, 16) == null);
        Assert.True(api->Malloc(null, 0, 16) == null);
        api->Free(api->Runtime, 7, (void*)0x1000); // ignored: no such domain
        Assert.Equal(RtMemStatus.InvalidArgument, api->GetAllocator(api->Runtime, 5, &a));
        Assert.Equal(RtMemStatus.InvalidArgument, api->GetAllocator(api->Runtime, 0, null));
        RtMemAllocator incomplete = default;
        Assert.Equal(RtMemStatus.InvalidArgument, api->SetAllocator(api->Runtime, 0, &incomplete));
        Assert.Equal(RtMemStatus.InvalidArgument, api->InstallHook(api->Runtime, 0, &incomplete, &a));
        Assert.Equal(-1, api->LiveBlocks(api->Runtime, 9));
        Assert.Equal("malloc", runtime.Raw.DescribeChain());
    }

    [Theory]
    [ClassData(typeof(AllDomains))]
    public void What_get_returns_set_restores_exactly(MemoryDomainKind kind)
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        RtMemApi* api = runtime.NativeApi;
        int d = (int)kind;
        MemoryAllocator before = runtime[kind].Allocator;
        RtMemAllocator first, second;
        Assert.Equal(RtMemStatus.Ok, api->GetAllocator(api->Runtime, d, &first));
        Assert.Equal(RtMemStatus.Ok, api->SetAllocator(api->Runtime, d, &first));
        Assert.Equal(RtMemStatus.Ok, api->GetAllocator(api->Runtime, d, &second));
        Assert.Equal(first, second);
        Assert.Same(before, runtime[kind].Allocator);

        // Through a C allocator and back: the managed allocator returns, the struct is the same as before.
        RtMemAllocator c = TestAllocator.Struct;
        Assert.Equal(RtMemStatus.Ok, api->SetAllocator(api->Runtime, d, &c));
        RtMemAllocator got;
        Assert.Equal(RtMemStatus.Ok, api->GetAllocator(api->Runtime, d, &got));
        Assert.Equal(c, got);
        Assert.IsType<NativeAllocator>(runtime[kind].Allocator);
        Assert.Equal(RtMemStatus.Ok, api->SetAllocator(api->Runtime, d, &first));
        Assert.Same(before, runtime[kind].Allocator);
    }

    [Fact]
    public void A_c_allocator_serves_managed_callers_with_exact_accounting_and_is_refused_over_live_blocks()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Malloc);
        RtMemApi* api = runtime.NativeApi;
        void* live = runtime.Obj.Malloc(8);
        RtMemAllocator c = TestAllocator.Struct;
        Assert.Equal(RtMemStatus.Busy, api->SetAllocator(api->Runtime, (int)MemoryDomainKind.Obj, &c));
        Assert.Equal("malloc", runtime.Obj.DescribeChain());
        runtime.Obj.Free(live);

        Assert.Equal(RtMemStatus.Ok, api->SetAllocator(api->Runtime, (int)MemoryDomainKind.Obj, &c));
        long calls = TestAllocator.Calls;
        byte* p = (byte*)runtime.Obj.Malloc(40);
        p = (byte*)runtime.Obj.Realloc(p, 80);
        byte* q = (byte*)runtime.Obj.Calloc(2, 8);
        Assert.Equal(80 + 16, runtime.Obj.GetStatistics().LiveBytes);
        runtime.Obj.Free(p);
        runtime.Obj.Free(q);
        Assert.Equal(calls + 5, TestAllocator.Calls);
        Assert.Equal(0, runtime.Obj.GetStatistics().LiveBytes);
        Assert.Equal("native", runtime.Obj.DescribeChain());
    }

    [Fact]
    public void A_managed_allocator_that_throws_returns_null_to_c_and_the_fault_is_kept()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Malloc);
        runtime.Mem.InstallHook(new ThrowingHook());
        RtMemApi* api = runtime.NativeApi;
        RtMemAllocator mem;
        Assert.Equal(RtMemStatus.Ok, api->GetAllocator(api->Runtime, (int)MemoryDomainKind.Mem, &mem));
        long faults = NativeFaults.Count;
        Assert.True(mem.Malloc(mem.Ctx, 16) == null);   // the exported struct, called as C calls it
        mem.Free(mem.Ctx, (void*)0x10);                  // a throwing free is swallowed
        Assert.Equal(faults + 2, NativeFaults.Count);
        Assert.IsType<InvalidOperationException>(NativeFaults.Last);
        Assert.True(api->Malloc(api->Runtime, (int)MemoryDomainKind.Mem, 16) == null); // the domain's own barrier
    }

    [Fact]
    public void Arena_allocators_round_trip_and_a_c_arena_allocator_feeds_the_small_object_allocator()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        RtMemApi* api = runtime.NativeApi;
        int obj = (int)MemoryDomainKind.Obj;
        RtMemArenaAllocator first, again;
        Assert.Equal(RtMemStatus.Ok, api->GetArenaAllocator(api->Runtime, obj, &first));
        Assert.Equal(RtMemStatus.Ok, api->SetArenaAllocator(api->Runtime, obj, &first));
        Assert.Equal(RtMemStatus.Ok, api->GetArenaAllocator(api->Runtime, obj, &again));
        Assert.Equal(first, again);
        Assert.Same(OsArenaAllocator.Instance, runtime.SmallObjects(MemoryDomainKind.Obj)!.ArenaAllocator);

        RtMemArenaAllocator c = TestArenas.Struct;
        Assert.Equal(RtMemStatus.Ok, api->SetArenaAllocator(api->Runtime, obj, &c));
        long arenas = TestArenas.Allocated;
        void* p = runtime.Obj.Malloc(16);
        Assert.Equal(arenas + 1, TestArenas.Allocated);
        runtime.Obj.Free(p);

        RtMemArenaAllocator none;
        Assert.Equal(RtMemStatus.NotSupported, api->GetArenaAllocator(api->Runtime, (int)MemoryDomainKind.Raw, &none));
    }

    /// <summary>An allocator "written in C": unmanaged-callable functions over NativeMemory, counting calls.</summary>
    private static class TestAllocator
    {
        private static long s_calls;

        public static long Calls => Interlocked.Read(ref s_calls);

        public static RtMemAllocator Struct => new() { Ctx = (void*)0x1234, Malloc = &Malloc, Calloc = &Calloc, Realloc = &Realloc, Free = &Free };

        [UnmanagedCallersOnly]
        private static void* Malloc(void* ctx, nuint size)
        {
            Interlocked.Increment(ref s_calls);
            return NativeMemory.AlignedAlloc(size == 0 ? 1 : size, 16);
        }

        [UnmanagedCallersOnly]
        private static void* Calloc(void* ctx, nuint n, nuint size)
        {
            Interlocked.Increment(ref s_calls);
            void* p = NativeMemory.AlignedAlloc(n * size == 0 ? 1 : n * size, 16);
            NativeMemory.Clear(p, n * size);
            return p;
        }

        [UnmanagedCallersOnly]
        private static void* Realloc(void* ctx, void* ptr, nuint size)
        {
            Interlocked.Increment(ref s_calls);
            return NativeMemory.AlignedRealloc(ptr, size == 0 ? 1 : size, 16);
        }

        [UnmanagedCallersOnly]
        private static void Free(void* ctx, void* ptr)
        {
            Interlocked.Increment(ref s_calls);
            NativeMemory.AlignedFree(ptr);
        }
    }

    /// <summary>An arena allocator "written in C", counting arenas.</summary>
    private static class TestArenas
    {
        private static long s_allocated;

        public static long Allocated => Interlocked.Read(ref s_allocated);

        public static RtMemArenaAllocator Struct => new() { Ctx = null, Alloc = &Alloc, Free = &Free };

        [UnmanagedCallersOnly]
        private static void* Alloc(void* ctx, nuint size)
        {
            Interlocked.Increment(ref s_allocated);
            return NativeMemory.AlignedAlloc(size, size);
        }

        [UnmanagedCallersOnly]
        private static void Free(void* ctx, void* ptr, nuint size) => NativeMemory.AlignedFree(ptr);
    }

    private sealed class ThrowingHook : MemoryHook
    {
        public override void* Malloc(nuint size) => throw new InvalidOperationException("malloc threw");

        public override void Free(void* ptr) => throw new InvalidOperationException("free threw");
    }
}
