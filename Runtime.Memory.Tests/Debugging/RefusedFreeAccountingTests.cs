using System.Runtime.InteropServices;
using Runtime.Memory.Tests.Infrastructure;
using Runtime.Memory.Tests.Reliability;

namespace Runtime.Memory.Tests.Debugging;

/// <summary>
/// A free the debug hooks refuse (a double free, the free of a damaged block, a foreign pointer) leaves the block live:
/// it is counted nowhere, whatever sits above the hook that refused it.
/// </summary>
public sealed unsafe class RefusedFreeAccountingTests
{
    public static TheoryData<string, string, ViolationAction> Cases()
    {
        var data = new TheoryData<string, string, ViolationAction>();
        foreach (string allocator in DebugRuntimes.BaseAllocators)
        {
            foreach (string above in new[] { "none", "pass-through", "tracing", "pass-through+tracing" })
            {
                data.Add(allocator, above, ViolationAction.Log);
                data.Add(allocator, above, ViolationAction.Throw);
            }
        }

        return data;
    }

    [Theory, MemberData(nameof(Cases))]
    public void Refused_frees_are_counted_nowhere(string allocator, string above, ViolationAction action)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(allocator, action);
        MemoryDomain mem = runtime.Mem;
        if (above.Contains("pass-through"))
        {
            mem.InstallHook(new PassThroughHook());
        }

        if (above.Contains("tracing"))
        {
            runtime.Tracer.Start(1);
        }

        byte* freedTwice = (byte*)mem.Malloc(40);
        mem.Free(freedTwice);
        byte* overrun = (byte*)mem.Malloc(24);
        overrun[24] = (byte)'x';
        void* foreign = NativeMemory.AlignedAlloc(64, 16);
        try
        {
            Refuse(action, () => mem.Free(freedTwice));
            Refuse(action, () => mem.Free(overrun));
            Refuse(action, () => mem.Free(foreign));
        }
        finally
        {
            NativeMemory.AlignedFree(foreign);
        }

        Assert.Equal(3, runtime.Debugger.Violations);
        DomainStatistics s = mem.GetStatistics();
        Assert.Equal((1L, 24L), (s.LiveBlocks, s.LiveBytes)); // the damaged block, leaked and still held by the hooks
        Assert.Equal(2, s.Allocations);
        Assert.Equal(1, s.Frees);
        Assert.Equal(1, runtime.Debugger.LiveBlocks);
    }

    private static void Refuse(ViolationAction action, Action free)
    {
        if (action == ViolationAction.Throw)
        {
            Assert.Throws<MemoryViolationException>(free);
        }
        else
        {
            free();
        }
    }
}
