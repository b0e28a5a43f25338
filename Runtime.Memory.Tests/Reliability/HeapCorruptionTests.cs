using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Runtime.Memory.Hosting;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Reliability;

/// <summary>
/// A fault inside a built-in allocator is memory corruption, never an allocation failure: the small-object allocator
/// checks each free-list link it follows, and the report names the domain, the operation and the corrupted block. Only
/// a user-supplied allocator or hook that throws is turned into a null, and that is logged once with its name.
/// </summary>
public sealed unsafe class HeapCorruptionTests
{
    /// <summary>
    /// The case under the debug hooks: two 48-byte blocks side by side in pymalloc's 80-byte class (48 + 32
    /// bytes of guard bytes), the second freed, then the first overrun by 40 bytes: its trailer and the freed
    /// neighbour's free-list link are overwritten. The next allocations of that size used to return null, silently.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_overrun_into_a_free_neighbour_is_reported_at_the_next_malloc_naming_the_corrupted_block(bool passThroughHook)
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Throw, quarantineBytes: 0); // freed blocks must reach pymalloc's free lists
        MemoryDomain obj = runtime.Obj;
        if (passThroughHook)
        {
            obj.InstallHook(new PassThroughHook());
        }

        (nint a, nint b) = AdjacentPair(obj, 48);
        byte* first = (byte*)a, second = (byte*)b;
        obj.Free(second);
        new Span<byte>(first, 48 + 40).Fill(0x41); // 40 bytes past the end: trailer (16), then the neighbour's link

        MemoryViolation violation = DebugRuntimes.Catch(() => obj.Malloc(48));

        Assert.Equal(MemoryViolationKind.HeapCorruption, violation.Kind);
        Assert.Equal(MemoryOperation.Malloc, violation.Operation);
        Assert.Equal(MemoryDomainKind.Obj, violation.Domain);
        nuint corrupted = (nuint)(second - 16); // the pymalloc block under the debug block
        Assert.Equal(corrupted, violation.Address);
        Assert.Contains($"0x{corrupted:x16}", violation.Report);
        Assert.Contains("0x4141414141414141", violation.Report);
        Assert.Contains("obj domain", violation.Report);
        Assert.Contains($"The live block before it, p=0x{(nuint)first:x16} (48 bytes requested)", violation.Report); // the overrun that did it
        Assert.Contains("an overrun of that block ran into this one", violation.Report);

        // The corrupted list is dropped, not followed: the domain goes on allocating good blocks.
        for (int i = 0; i < 600; i++)
        {
            void* p = obj.Malloc(48);
            Assert.True(p != null, $"allocation {i} after the report returned null");
        }

        Assert.Equal(1, runtime.Debugger.Violations);
        Assert.Null(obj.LastFault);
    }

    /// <summary>Under <see cref="ViolationAction.Log"/> the report is logged, and allocation carries on with good blocks.</summary>
    [Fact]
    public void Under_Log_the_corruption_is_reported_once_and_later_allocations_succeed()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Log, quarantineBytes: 0); // freed blocks must reach pymalloc's free lists
        MemoryDomain obj = runtime.Obj;
        obj.InstallHook(new PassThroughHook());
        (nint a, nint b) = AdjacentPair(obj, 48);
        byte* first = (byte*)a, second = (byte*)b;
        obj.Free(second);
        new Span<byte>(first, 48 + 40).Fill(0x41);

        int nulls = 0;
        for (int i = 0; i < 600; i++)
        {
            nulls += obj.Malloc(48) == null ? 1 : 0;
        }

        Assert.Equal(0, nulls);
        Assert.Equal(1, runtime.Debugger.Violations);
        Assert.Equal(MemoryViolationKind.HeapCorruption, runtime.Debugger.LastViolation!.Kind);
    }

    /// <summary>
    /// A block freed by another thread waits on its pool's remote-free list; a stray write over its link is found when
    /// the owner collects that list, and reported naming the block, instead of being followed.
    /// </summary>
    [Fact]
    public void A_damaged_link_in_the_list_of_remote_frees_is_reported_when_the_owner_collects_it()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Throw, quarantineBytes: 0); // freed blocks must reach pymalloc's free lists
        MemoryDomain obj = runtime.Obj;
        var blocks = new List<nint>();
        for (int i = 0; i < 300; i++)
        {
            blocks.Add((nint)obj.Malloc(48)); // more than one pool of the 80-byte class: the first pool is full
        }

        byte* victim = (byte*)blocks[10];
        var other = new Thread(() => obj.Free(victim));
        other.Start();
        other.Join();
        *(ulong*)(victim - 16) = 0x4242424242424242; // a stray write over the pymalloc link under the debug block

        MemoryViolation violation = DebugRuntimes.Catch(() =>
        {
            for (int i = 0; i < 1000; i++)
            {
                Assert.True(obj.Malloc(48) != null);
            }
        });

        Assert.Equal(MemoryViolationKind.HeapCorruption, violation.Kind);
        Assert.Equal((nuint)(victim - 16), violation.Address);
        Assert.Contains("freed by other threads", violation.Report);
        Assert.Contains("0x4242424242424242", violation.Report);
    }

    /// <summary>
    /// Without the debug hooks, a write after free on pymalloc overwrites the free block's link; with or without a user
    /// hook above, the next malloc stops the process with the report (it used to return null for ever with a hook).
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_write_after_free_on_pymalloc_stops_the_process_with_a_report(bool passThroughHook)
    {
        var args = new List<string> { "write-after-free", "--RuntimeMemory:Allocator=pymalloc" };
        if (passThroughHook)
        {
            args.Add("--Sample:PassThroughHook=true");
        }

        ChildProcess.Result run = ChildProcess.Run("DebugHooks", args.ToArray());

        Assert.NotEqual(0, run.ExitCode);
        Assert.DoesNotContain("returned null", run.Stdout);
        string freed = run.Stdout.Split('\n').Single(l => l.StartsWith("freed ", StringComparison.Ordinal))["freed ".Length..].Trim();
        Assert.Contains("heap corruption", run.Stderr);
        Assert.Contains("obj domain", run.Stderr);
        Assert.Contains("malloc", run.Stderr);
        Assert.Contains(freed, run.Stderr);
    }

    /// <summary>A user hook that throws gets a null return, and the fault is logged once, with the hook's name.</summary>
    [Fact]
    public void A_user_hook_that_throws_gets_null_and_is_logged_once_with_its_name()
    {
        using var logs = new FakeLoggerProvider();
        using ILoggerFactory factory = LoggerFactory.Create(b => b.AddProvider(logs));
        var options = new RuntimeMemoryOptions();
        using var runtime = new RuntimeMemory(new DefaultAllocatorProvider(options), options, factory);
        runtime.Mem.InstallHook(new ThrowingHook());

        for (int i = 0; i < 5; i++)
        {
            Assert.True(runtime.Mem.Malloc(8) == null);
        }

        var faults = logs.Collector.GetSnapshot().Where(r => r.Id.Id == 4501).ToList();
        Assert.Single(faults);
        Assert.Contains("'throwing'", faults[0].Message);
        Assert.Contains("a buggy hook", faults[0].Message);
        Assert.Contains("mem domain", faults[0].Message);
        Assert.Contains("InvalidOperationException", faults[0].Message);
        Assert.Equal(5, runtime.Mem.GetStatistics().Failures);
    }

    /// <summary>Who raised an exception decides what it is: the runtime's own code (corruption) or the user's (a failure).</summary>
    [Fact]
    public void A_fault_is_blamed_on_the_innermost_frame_outside_the_framework()
    {
        Exception user = Assert.ThrowsAny<Exception>(() => ThrowingHook.Throw());
        Exception builtIn = Assert.ThrowsAny<Exception>(() => _ = new UnboundHook().Inner); // thrown by MemoryHook itself
        Exception viaFramework = Assert.ThrowsAny<Exception>(() => new Dictionary<int, int> { [1] = 1 }.Add(1, 1));

        Assert.False(AllocatorFaults.RaisedByRuntime(user));
        Assert.True(AllocatorFaults.RaisedByRuntime(builtIn));
        Assert.False(AllocatorFaults.RaisedByRuntime(viaFramework)); // the test called the framework: the test's fault
    }

    /// <summary>Two blocks of <paramref name="size"/> that lie next to each other in one pool (first, then second).</summary>
    internal static (nint First, nint Second) AdjacentPair(MemoryDomain domain, nuint size)
    {
        var held = new List<nint>();
        try
        {
            byte* previous = (byte*)domain.Malloc(size);
            for (int i = 0; i < 1000; i++)
            {
                byte* next = (byte*)domain.Malloc(size);
                if (next - previous == (nint)(size + 32))
                {
                    return ((nint)previous, (nint)next);
                }

                held.Add((nint)previous);
                previous = next;
            }

            throw new InvalidOperationException("no two adjacent blocks in 1000 allocations");
        }
        finally
        {
            foreach (nint p in held)
            {
                domain.Free((void*)p);
            }
        }
    }

    private sealed class ThrowingHook : MemoryHook
    {
        public override string Name => "throwing";

        public override void* Malloc(nuint size) => Throw();

        public static void* Throw() => throw new InvalidOperationException("a buggy hook");
    }

    private sealed class UnboundHook : MemoryHook;
}
