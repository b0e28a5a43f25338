using Runtime.Memory.Interop;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Interop;

/// <summary>
/// The sample C extension (samples/NativeExtension/native/counting_ext.c, compiled with gcc against runtime_mem.h when
/// the tests build) loaded into runtimes and driven through its exports.
/// </summary>
public sealed unsafe class NativeExtensionTests
{
    private static string Library => Path.Combine(AppContext.BaseDirectory, "libcounting_ext.so");

    /// <summary>Skips (visibly) where the C extension could not be built: not Linux, or no C compiler.</summary>
    private static void RequireExtension() => OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.CountingExtension);

    [SkippableTheory]
    [ClassData(typeof(AllAllocatorsAndDomains))]
    public void A_counting_hook_installed_from_c_sees_every_call_from_c_and_from_csharp(string allocator, MemoryDomainKind kind)
    {
        RequireExtension();
        OptionalLibraries.SkipUnlessAvailable(allocator);
        using RuntimeMemory runtime = TestRuntimes.Create(allocator);
        using NativeExtension extension = NativeExtension.Load(runtime, Library);
        var install = (delegate* unmanaged<int, int>)extension.GetExport("ext_install_counting_hook");
        var remove = (delegate* unmanaged<int, int>)extension.GetExport("ext_remove_counting_hook");
        var counts = (delegate* unmanaged<int, long*, void>)extension.GetExport("ext_counts");
        var work = (delegate* unmanaged<int, int, int>)extension.GetExport("ext_work");
        string chainBefore = runtime[kind].DescribeChain();

        Assert.Equal(RtMemStatus.Ok, install((int)kind));
        Assert.Equal($"native-hook > {chainBefore}", runtime[kind].DescribeChain());
        Assert.Equal(0, work((int)kind, 300)); // 300 blocks: 200 mallocs, 100 callocs, 150 reallocs, 300 frees
        void* p = runtime[kind].Malloc(24);     // a managed caller goes through the C hook too
        runtime[kind].Free(p);

        long* c = stackalloc long[4];
        counts((int)kind, c);
        Assert.Equal((201L, 100L, 150L, 301L), (c[0], c[1], c[2], c[3]));
        Assert.Equal(0, runtime[kind].LiveBlocks);
        Assert.Equal(RtMemStatus.Ok, remove((int)kind));
        Assert.Equal(chainBefore, runtime[kind].DescribeChain());
        Assert.Equal(RtMemStatus.NotSupported, remove((int)kind)); // not installed any more
    }

    [SkippableFact]
    public void C_and_csharp_agree_on_the_layout_of_every_abi_struct()
    {
        RequireExtension();
        using RuntimeMemory runtime = TestRuntimes.Create();
        using NativeExtension extension = NativeExtension.Load(runtime, Library);
        var size = (delegate* unmanaged<int, nuint>)extension.GetExport("ext_sizeof");
        Assert.Equal((nuint)sizeof(RtMemApi), size(0));
        Assert.Equal((nuint)sizeof(RtMemAllocator), size(1));
        Assert.Equal((nuint)sizeof(RtMemArenaAllocator), size(2));
        Assert.Equal((nuint)System.Runtime.InteropServices.Marshal.OffsetOf<RtMemApi>(nameof(RtMemApi.LiveBytes)), size(3));
        Assert.Equal((nuint)System.Runtime.InteropServices.Marshal.OffsetOf<RtMemAllocator>(nameof(RtMemAllocator.Free)), size(4));
        Assert.Equal((nuint)System.Runtime.InteropServices.Marshal.OffsetOf<RtMemApi>(nameof(RtMemApi.TraceUntrack)), size(5));
    }

    [SkippableFact]
    public void An_extension_traces_memory_it_allocates_itself_through_trace_track_and_untrack()
    {
        RequireExtension();
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using NativeExtension extension = NativeExtension.Load(runtime, Library);
        var track = (delegate* unmanaged<nuint, void**, int>)extension.GetExport("ext_track_buffer");
        var untrack = (delegate* unmanaged<void*, int>)extension.GetExport("ext_untrack_buffer");

        void* early;
        Assert.Equal(RtMemStatus.NotTracing, track(100, &early)); // as PyTraceMalloc_Track: -2 when not tracing
        Assert.Equal(RtMemStatus.NotTracing, untrack(early));

        runtime.Tracer.FrameProvider = new Runtime.Memory.Tracing.ThreadFrameStack();
        runtime.Tracer.Start();
        void* buffer;
        Runtime.Memory.Tracing.ThreadFrameStack.Push("image.lua", 8, "decode");
        try
        {
            Assert.Equal(RtMemStatus.Ok, track(1 << 20, &buffer));
        }
        finally
        {
            Runtime.Memory.Tracing.ThreadFrameStack.Pop();
        }

        Runtime.Memory.Tracing.Trace trace = Assert.Single(runtime.Tracer.TakeSnapshot().Traces);
        Assert.Equal((42u, 1L << 20, "image.lua:8"), (trace.Domain, trace.Size, trace.Traceback.MostRecent.ToString()));
        Assert.Equal(RtMemStatus.Ok, untrack(buffer));
        Assert.Equal(0, runtime.Tracer.TracedBlocks);
    }

    [SkippableFact]
    public void The_round_trip_holds_from_c()
    {
        RequireExtension();
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using NativeExtension extension = NativeExtension.Load(runtime, Library);
        var roundTrip = (delegate* unmanaged<int, int>)extension.GetExport("ext_round_trip");
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            MemoryAllocator before = runtime[kind].Allocator;
            Assert.Equal(0, roundTrip((int)kind));
            Assert.Same(before, runtime[kind].Allocator);
        }
    }

    [SkippableFact]
    public void A_c_allocator_is_called_by_native_callers_directly_and_by_managed_callers_through_its_pointers()
    {
        RequireExtension();
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using NativeExtension extension = NativeExtension.Load(runtime, Library);
        var installC = (delegate* unmanaged<int, int>)extension.GetExport("ext_install_c_allocator");
        var directIsNative = (delegate* unmanaged<int, int>)extension.GetExport("ext_direct_call_is_native");
        var cCalls = (delegate* unmanaged<long>)extension.GetExport("ext_c_allocator_calls");
        int raw = (int)MemoryDomainKind.Raw;

        void* live = runtime.Raw.Malloc(8);
        Assert.Equal(RtMemStatus.Busy, installC(raw)); // the new allocator could not free the live block
        runtime.Raw.Free(live);
        Assert.Equal(RtMemStatus.Ok, installC(raw));
        Assert.Equal("native", runtime.Raw.DescribeChain());

        Assert.Equal(1, directIsNative(raw)); // get_allocator handed back the C functions themselves
        long before = cCalls();
        byte* p = (byte*)runtime.Raw.Malloc(100);
        Blocks.Fill(p, 100, 5);
        p = (byte*)runtime.Raw.Realloc(p, 1000);
        Assert.True(Blocks.Holds(p, 100, 5));
        runtime.Raw.Free(p);
        Assert.Equal(before + 3, cCalls());
        Assert.Equal(0, runtime.Raw.GetStatistics().LiveBytes);
    }

    [SkippableFact]
    public void A_library_without_the_init_export_is_refused_clearly()
    {
        RequireExtension();
        using RuntimeMemory runtime = TestRuntimes.Create();
        var error = Assert.Throws<EntryPointNotFoundException>(() => NativeExtension.Load(runtime, "libz.so.1"));
        Assert.Contains("does not export rtmem_extension_init(const rtmem_api *)", error.Message);
        Assert.Throws<DllNotFoundException>(() => NativeExtension.Load(runtime, "/nonexistent/libnothing.so"));
    }
}
