using Runtime.Memory.Testing;

using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Testing;

/// <summary>The fakes shipped in <c>Runtime.Memory.Testing</c> for users' tests.</summary>
public sealed unsafe class FakeTests
{
    [Fact]
    public void The_recorder_keeps_every_call_with_arguments_results_and_thread_and_can_be_cleared()
    {
        var recorder = new RecordingAllocator(new SystemAllocator());
        void* p = recorder.Malloc(16);
        recorder.Free(p);
        IReadOnlyList<RecordedCall> calls = recorder.GetSnapshot(clear: true);

        Assert.Equal(2, calls.Count);
        Assert.Equal((AllocatorOperation.Malloc, (nuint)16, (nint)p), (calls[0].Operation, calls[0].Size, calls[0].Result));
        Assert.Equal((AllocatorOperation.Free, (nint)p, (nint)0), (calls[1].Operation, calls[1].Pointer, calls[1].Result));
        Assert.All(calls, c => Assert.Equal(Environment.CurrentManagedThreadId, c.ThreadId));
        Assert.Equal(0, recorder.Count);

        recorder.Free(recorder.Malloc(1));
        Assert.Equal(3, recorder.GetSnapshot()[0].Sequence); // numbering carries on after a clear
    }

    [Fact]
    public void The_recorder_records_failures_as_zero_results()
    {
        var recorder = new RecordingAllocator(new SystemAllocator());
        Assert.True(recorder.Malloc(nuint.MaxValue) == null);
        Assert.Equal((nint)0, Assert.Single(recorder.GetSnapshot()).Result);
    }

    [Fact]
    public void The_failing_allocator_fails_requests_n_through_m()
    {
        var failing = new FailingAllocator(new SystemAllocator()).FailBetween(2, 3);
        var results = new List<nint>();
        for (int i = 0; i < 5; i++)
        {
            results.Add((nint)failing.Malloc(8));
        }

        Assert.Equal([true, false, false, true, true], results.Select(p => p != 0));
        Assert.Equal((5, 2), (failing.Requests, failing.Failures));
        foreach (nint p in results.Where(p => p != 0))
        {
            failing.Free((void*)p);
        }
    }

    [Fact]
    public void The_failing_allocator_fails_from_n_on_and_counts_every_kind_of_request()
    {
        var failing = new FailingAllocator(new SystemAllocator()).FailFrom(3);
        void* a = failing.Malloc(8);          // 1
        void* b = failing.Calloc(2, 2);       // 2
        Assert.True(failing.Realloc(a, 64) == null); // 3
        Assert.True(failing.Malloc(1) == null);      // 4
        failing.Free(a); // frees are never refused
        failing.Free(b);
        Assert.Equal((4, 2), (failing.Requests, failing.Failures));

        failing.FailNever();
        void* c = failing.Malloc(8);
        Assert.True(c != null);
        failing.Free(c);
    }

    [Fact]
    public void The_failing_allocator_rejects_an_empty_or_backwards_window()
    {
        var failing = new FailingAllocator();
        Assert.Throws<ArgumentOutOfRangeException>(() => failing.FailBetween(0, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => failing.FailBetween(5, 4));
    }

    [Fact]
    public void A_no_memory_scope_fails_every_domain_and_restores_each_chain()
    {
        RuntimeMemory runtime = TestRuntimes.Create();
        MemoryAllocator[] before = [runtime.Raw.Allocator, runtime.Mem.Allocator, runtime.Obj.Allocator];

        using (var scope = NoMemoryScope.Install(runtime, first: 2, last: 2))
        {
            foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
            {
                void* ok = runtime[kind].Malloc(8);
                Assert.True(ok != null);
                Assert.True(runtime[kind].Malloc(8) == null, $"request 2 of {kind} should fail");
                runtime[kind].Free(ok);
                Assert.Equal(1, scope[kind].Failures);
            }
        }

        Assert.Equal(before, [runtime.Raw.Allocator, runtime.Mem.Allocator, runtime.Obj.Allocator]);
        MemoryAssert.NoLiveBlocks(runtime);
    }

    [Fact]
    public void No_live_blocks_passes_on_a_clean_domain_and_names_the_leak_otherwise()
    {
        RuntimeMemory runtime = TestRuntimes.Create();
        MemoryAssert.NoLiveBlocks(runtime);
        void* p = runtime.Obj.Malloc(48);
        void* q = runtime.Raw.Malloc(2);

        var error = Assert.Throws<LiveBlocksException>(() => MemoryAssert.NoLiveBlocks(runtime));
        Assert.Equal("Expected no live blocks, but the raw domain has 1 live block (2 bytes); the obj domain has 1 live block (48 bytes).", error.Message);
        var one = Assert.Throws<LiveBlocksException>(() => MemoryAssert.NoLiveBlocks(runtime.Obj));
        Assert.Contains("obj domain has 1 live block (48 bytes)", one.Message);
        MemoryAssert.NoLiveBlocks(runtime.Mem);

        runtime.Obj.Free(p);
        runtime.Raw.Free(q);
        MemoryAssert.NoLiveBlocks(runtime);
    }
}
