using Runtime.Memory.Diagnostics;
using Runtime.Memory.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Runtime.Memory.Tests.Debugging;

/// <summary>
/// The quarantine of freed blocks (<c>RuntimeMemory:Debug:QuarantineBytes</c>): a write after free is found without
/// guard pages when the block leaves the quarantine or the quarantine is flushed; a double free of a quarantined block
/// names its size and serial number; with tracing, reports name where the block was allocated and where it was freed.
/// Without the quarantine (the code before it, or <c>QuarantineBytes = 0</c>) none of these writes is reported.
/// </summary>
public sealed unsafe class QuarantineTests(ITestOutputHelper output)
{
    /// <summary>Every <c>*_debug</c> allocator name (mimalloc's rows skip with the reason when the library is missing).</summary>
    public static TheoryData<string, ViolationAction> DebugNamesAndActions()
    {
        var data = new TheoryData<string, ViolationAction>();
        foreach (string name in new[] { AllocatorNames.Debug, AllocatorNames.MallocDebug, AllocatorNames.PymallocDebug, AllocatorNames.MimallocDebug })
        {
            data.Add(name, ViolationAction.Throw);
            data.Add(name, ViolationAction.Log);
        }

        return data;
    }

    private static RuntimeMemory Create(string name, ViolationAction action, long quarantineBytes = RuntimeMemoryDebugOptions.DefaultQuarantineBytes)
    {
        OptionalLibraries.SkipUnlessAvailable(name);
        return RuntimeMemory.Create(new RuntimeMemoryOptions
        {
            Allocator = name,
            Debug = new RuntimeMemoryDebugOptions { OnViolation = action, QuarantineBytes = quarantineBytes },
        });
    }

    /// <summary>Runs <paramref name="call"/>, which finds one violation, under <paramref name="action"/>, and returns it.</summary>
    private static MemoryViolation Observe(RuntimeMemory runtime, ViolationAction action, Action call)
    {
        long before = runtime.Debugger.Violations;
        if (action == ViolationAction.Throw)
        {
            MemoryViolation thrown = DebugRuntimes.Catch(call);
            Assert.Same(thrown, runtime.Debugger.LastViolation);
        }
        else
        {
            call(); // logged (to stderr: no logger), and the call returns
        }

        Assert.Equal(before + 1, runtime.Debugger.Violations);
        return runtime.Debugger.LastViolation!;
    }

    // ---- the detection matrix: writes after free -----------------------------------------------------------

    [SkippableTheory]
    [MemberData(nameof(DebugNamesAndActions))]
    public void A_write_after_free_at_the_first_a_middle_and_the_last_byte_is_reported_at_the_flush_with_its_offset(string name, ViolationAction action)
    {
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            foreach (int offset in new[] { 0, 37, 99 })
            {
                using RuntimeMemory runtime = Create(name, action);
                MemoryDomain domain = runtime[kind];
                byte* p = (byte*)domain.Malloc(100);
                ulong serial = runtime.Debugger.Calls;
                domain.Free(p);
                Assert.Equal(0, domain.LiveBytes); // the quarantine is not the program's
                p[offset] = 0x42; // the stale pointer

                MemoryViolation v = Observe(runtime, action, () => runtime.Debugger.FlushQuarantine());
                Assert.Equal(MemoryViolationKind.WriteAfterFree, v.Kind);
                Assert.Equal(MemoryOperation.Flush, v.Operation);
                Assert.Equal(kind, v.Domain);
                Assert.Equal((nuint)p, v.Address);
                Assert.Equal((nuint)100, v.RequestedSize);
                Assert.Equal(serial, v.Serial);
                Assert.StartsWith($"Memory violation in a quarantine flush through the {kind.ToName()} domain: write after free", v.Summary);
                Assert.Contains($"at p+{offset} (offset {offset} from p)", v.Report);
                Assert.Contains(" [42]", v.Report);
                Assert.Contains($"made by call #{serial}", v.Report);
                Assert.Contains("Enable allocation tracing to get the tracebacks where the block was allocated and freed.", v.Report);
                Assert.Equal(0, runtime.Debugger.QuarantinedBlocks); // checked and given back all the same
            }
        }
    }

    [SkippableTheory]
    [MemberData(nameof(DebugNamesAndActions))]
    public void A_write_after_free_is_reported_by_the_free_that_evicts_the_block_which_then_stays_live_under_throw(string name, ViolationAction action)
    {
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            using RuntimeMemory runtime = Create(name, action, quarantineBytes: 4 * 48); // four 16-byte blocks
            MemoryDomain domain = runtime[kind];
            var blocks = new byte*[5];
            for (int i = 0; i < blocks.Length; i++)
            {
                blocks[i] = (byte*)domain.Malloc(16);
            }

            domain.Free(blocks[0]);
            blocks[0][15] = 0; // the last byte
            domain.Free(blocks[1]);
            domain.Free(blocks[2]);
            domain.Free(blocks[3]); // the quarantine is full now: 4 x 48 bytes
            Assert.Equal(0, runtime.Debugger.Violations);

            MemoryViolation v = Observe(runtime, action, () => domain.Free(blocks[4])); // evicts blocks[0]
            Assert.Equal(MemoryViolationKind.WriteAfterFree, v.Kind);
            Assert.Equal(MemoryOperation.Free, v.Operation);
            Assert.Equal((nuint)blocks[0], v.Address);
            Assert.Contains("at p+15 (offset 15 from p)", v.Report);
            if (action == ViolationAction.Throw)
            {
                // The free that found it did not happen: the block is live, and a second free goes through cleanly.
                Assert.Equal(1, domain.LiveBlocks);
                domain.Free(blocks[4]);
            }

            Assert.Equal(0, domain.LiveBlocks);
            Assert.Equal(4, runtime.Debugger.QuarantinedBlocks);
            Assert.Equal(0, runtime.Debugger.FlushQuarantine());
            Assert.Equal(1, runtime.Debugger.Violations);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(DebugNamesAndActions))]
    public void A_write_through_a_pointer_kept_across_a_realloc_is_reported(string name, ViolationAction action)
    {
        using RuntimeMemory runtime = Create(name, action);
        byte* p = (byte*)runtime.Mem.Malloc(24);
        byte* q = (byte*)runtime.Mem.Realloc(p, 200);
        Assert.True(q != p); // the debug hooks always move
        p[3] = 1;
        MemoryViolation v = Observe(runtime, action, () => runtime.Debugger.FlushQuarantine());
        Assert.Equal(MemoryViolationKind.WriteAfterFree, v.Kind);
        Assert.Equal((nuint)p, v.Address);
        Assert.Equal((nuint)24, v.RequestedSize);
        runtime.Mem.Free(q);
    }

    [SkippableTheory]
    [MemberData(nameof(DebugNamesAndActions))]
    public void A_write_after_free_is_reported_before_the_block_is_reused_and_the_reused_block_is_clean(string name, ViolationAction action)
    {
        using RuntimeMemory runtime = Create(name, action, quarantineBytes: 48);
        MemoryDomain domain = runtime.Obj;
        byte* p = (byte*)domain.Malloc(16);
        byte* other = (byte*)domain.Malloc(16);
        domain.Free(p);
        p[8] = 0x77;
        MemoryViolation v = Observe(runtime, action, () => domain.Free(other)); // evicts p: checked, then given back
        Assert.Equal((nuint)p, v.Address);
        if (action == ViolationAction.Throw)
        {
            domain.Free(other);
        }

        // p's memory is the allocator's again: a later allocation may get it; it is a new, clean block.
        var later = new List<nint>();
        bool reused = false;
        for (int i = 0; i < 10_000 && !reused; i++)
        {
            byte* n = (byte*)domain.Malloc(16);
            later.Add((nint)n);
            reused = n == p;
            if (reused)
            {
                Assert.True(new ReadOnlySpan<byte>(n, 16).IndexOfAnyExcept((byte)0xCD) < 0, "the reused block is CLEANBYTE");
            }
        }

        output.WriteLine($"{name}: the block was {(reused ? "" : "not ")}reused within {later.Count} allocations");
        foreach (nint n in later)
        {
            domain.Free((void*)n);
        }

        Assert.Equal(0, runtime.Debugger.FlushQuarantine());
        Assert.Equal(1, runtime.Debugger.Violations);
    }

    [SkippableTheory]
    [MemberData(nameof(DebugNamesAndActions))]
    public void A_double_free_of_a_quarantined_block_names_its_size_and_serial_number(string name, ViolationAction action)
    {
        using RuntimeMemory runtime = Create(name, action);
        void* p = runtime.Raw.Malloc(40);
        ulong serial = runtime.Debugger.Calls;
        runtime.Raw.Free(p);
        MemoryViolation v = Observe(runtime, action, () => runtime.Raw.Free(p));
        Assert.Equal(MemoryViolationKind.AlreadyFreed, v.Kind);
        Assert.Equal((nuint)40, v.RequestedSize);
        Assert.Equal(serial, v.Serial);
        Assert.Contains("The block was freed already and is still in the quarantine", v.Report);
        Assert.Contains($"    40 bytes originally requested\n    The block was made by call #{serial} to debug malloc/realloc.\n", v.Report);
        Assert.Equal(0, runtime.Debugger.FlushQuarantine()); // the second free changed nothing in the block
    }

    [Fact]
    public void With_guard_pages_a_double_free_of_a_block_in_their_quarantine_names_its_size_and_serial_number()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Pymalloc, ViolationAction.Throw, guardPages: true);
        void* p = runtime.Obj.Malloc(24);
        ulong serial = runtime.Debugger.Calls;
        runtime.Obj.Free(p);
        MemoryViolation v = DebugRuntimes.Catch(() => runtime.Obj.Free(p));
        Assert.Equal(MemoryViolationKind.AlreadyFreed, v.Kind);
        Assert.Equal((nuint)24, v.RequestedSize);
        Assert.Equal(serial, v.Serial);
        Assert.Contains("still in the quarantine (its pages inaccessible, not yet\n    unmapped)", v.Report);
        Assert.Equal(0, runtime.Debugger.QuarantineBytes > 0 ? runtime.Debugger.QuarantinedBytes : 0); // no byte quarantine with guard pages
    }

    [Fact]
    public void Without_the_quarantine_a_write_after_free_goes_unreported_and_a_double_free_has_no_size()
    {
        using RuntimeMemory runtime = Create(AllocatorNames.PymallocDebug, ViolationAction.Throw, quarantineBytes: 0);
        byte* p = (byte*)runtime.Obj.Malloc(100);
        runtime.Obj.Free(p);
        p[50] = 1; // pymalloc's link is in the header's first word (p-16): the data bytes are not its bookkeeping
        Assert.Equal(0, runtime.Debugger.FlushQuarantine());
        Assert.Equal(0, runtime.Debugger.Violations); // missed: this is what the quarantine is for
        MemoryViolation v = DebugRuntimes.Catch(() => runtime.Obj.Free(p));
        Assert.Null(v.RequestedSize);
        Assert.Contains("Its size and serial number went with it.", v.Report);
    }

    // ---- where the block was born and where it died -----------------------------------------------------------

    /// <summary>A frame provider whose one frame the test sets, as a Lua host's would be (file:line of the script).</summary>
    private sealed class ScriptFrames : IFrameProvider
    {
        public Frame Current = new("main.lua", 1, "main");

        public int GetFrames(Span<Frame> frames, out int totalFrames)
        {
            totalFrames = 1;
            frames[0] = Current;
            return 1;
        }
    }

    [SkippableTheory]
    [InlineData(MemoryViolationKind.WriteAfterFree)]
    [InlineData(MemoryViolationKind.AlreadyFreed)]
    public void With_tracing_the_report_names_where_the_block_was_allocated_and_where_it_was_freed(MemoryViolationKind kind)
    {
        using RuntimeMemory runtime = Create(AllocatorNames.PymallocDebug, ViolationAction.Throw);
        var frames = new ScriptFrames();
        runtime.Tracer.FrameProvider = frames;
        runtime.Tracer.Start(frames: 1);
        frames.Current = new Frame("alloc.lua", 10, "make");
        byte* p = (byte*)runtime.Obj.Malloc(64);
        frames.Current = new Frame("free.lua", 20, "drop");
        runtime.Obj.Free(p);
        frames.Current = new Frame("main.lua", 30, "main");

        MemoryViolation v;
        if (kind == MemoryViolationKind.WriteAfterFree)
        {
            p[0] = 9;
            v = DebugRuntimes.Catch(() => runtime.Debugger.FlushQuarantine());
        }
        else
        {
            v = DebugRuntimes.Catch(() => runtime.Obj.Free(p));
        }

        output.WriteLine(v.Report);
        Assert.Equal(kind, v.Kind);
        Assert.Contains("Memory block allocated at (most recent call first):\n  File \"alloc.lua\", line 10", v.Report);
        Assert.Contains("Memory block freed at (most recent call first):\n  File \"free.lua\", line 20", v.Report);
        Assert.DoesNotContain("main.lua", v.Report);
        runtime.Tracer.Stop();
    }

    [Fact]
    public void The_DebugHooks_sample_catches_a_write_after_free_without_guard_pages_and_names_both_tracebacks()
    {
        ChildProcess.Result run = ChildProcess.Run("DebugHooks");
        output.WriteLine(run.Stdout);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("7 of 7 misuses caught", run.Stdout);
        string report = run.Stdout[run.Stdout.IndexOf("--- a write after free", StringComparison.Ordinal)..];
        Assert.Contains("write after free (a byte of a freed block changed while it was in the quarantine, at p+5)", report);
        int allocated = report.IndexOf("Memory block allocated at (most recent call first):", StringComparison.Ordinal);
        int freed = report.IndexOf("Memory block freed at (most recent call first):", StringComparison.Ordinal);
        Assert.True(allocated > 0 && freed > allocated, report);
        Assert.Contains("MakeBuffer", report[allocated..freed]);
        Assert.Contains("DropBuffer", report[freed..]);
    }

    [Fact]
    public void Under_FailFast_a_write_after_free_found_by_a_flush_stops_the_process_with_the_report()
    {
        ChildProcess.Result run = ChildProcess.Run("DebugHooks", "stale-write");
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains("flushing the quarantine", run.Stdout);
        Assert.DoesNotContain("flushed;", run.Stdout); // nothing ran after the violation
        Assert.Contains("Memory violation in a quarantine flush through the obj domain: write after free", run.Stderr);
        Assert.Contains("at p+63 (offset 63 from p)", run.Stderr);
        Assert.Contains("    64 bytes originally requested\n", run.Stderr);
        Assert.Contains("RuntimeMemory debug hooks:", run.Stderr); // FailFast's own message

        ChildProcess.Result off = ChildProcess.Run("DebugHooks", "stale-write", "--RuntimeMemory:Debug:QuarantineBytes=0");
        Assert.Equal(0, off.ExitCode);
        Assert.Contains("flushed; writes after free found: 0", off.Stdout); // without the quarantine: missed
    }

    // ---- budgets and statistics --------------------------------------------------------------------------------

    [Fact]
    public void Quarantined_bytes_are_counted_apart_and_do_not_eat_the_budget()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create(new RuntimeMemoryOptions
        {
            Allocator = AllocatorNames.PymallocDebug,
            Debug = new RuntimeMemoryDebugOptions { OnViolation = ViolationAction.Throw },
        });
        runtime.Obj.MaxBytes = 3000;
        void* a = runtime.Obj.Malloc(2000);
        Assert.True(a != null);
        runtime.Obj.Free(a);
        void* b = runtime.Obj.Malloc(2000); // the first block is still held, but not in the budget
        Assert.True(b != null);
        Assert.Equal(2000, runtime.Obj.LiveBytes);

        DebugStatistics debug = runtime.GetStatistics().Debug!;
        Assert.Equal(2000 + 32, debug.QuarantinedBytes);
        Assert.Equal(1, debug.QuarantinedBlocks);
        Assert.Equal(2000 + 32, runtime.Debugger.QuarantinedBytes);

        // Per domain: obj holds the block, the others nothing; the domain's live bytes do not include it.
        DomainStatistics obj = runtime.Obj.GetStatistics();
        Assert.Equal((2000L + 32, 1L, 2000L), (obj.QuarantinedBytes, obj.QuarantinedBlocks, obj.LiveBytes));
        Assert.Equal((0L, 0L), (runtime.Mem.GetStatistics().QuarantinedBytes, runtime.Raw.GetStatistics().QuarantinedBlocks));

        runtime.Collect(); // flushes the quarantine
        Assert.Equal(0, runtime.GetStatistics().Debug!.QuarantinedBytes);
        Assert.Equal(0, runtime.Obj.GetStatistics().QuarantinedBytes);
        runtime.Obj.Free(b);
    }

    [Fact]
    public void The_quarantine_holds_at_most_its_bytes_per_domain()
    {
        using RuntimeMemory runtime = Create(AllocatorNames.MallocDebug, ViolationAction.Throw, quarantineBytes: 10_000);
        var rng = new Random(7);
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            for (int i = 0; i < 2000; i++)
            {
                runtime[kind].Free(runtime[kind].Malloc((nuint)rng.Next(0, 600)));
                Assert.True(runtime.Debugger.QuarantinedBytes <= 10_000 * ((int)kind + 1));
            }
        }

        Assert.True(runtime.Debugger.QuarantinedBytes > 3 * (10_000 - 632)); // each domain's is nearly full
        Assert.Equal(0, runtime.Debugger.Violations);
    }

    // ---- the detection rate for a given quarantine size --------------------------------------------------------

    [SkippableTheory]
    [InlineData(AllocatorNames.MallocDebug, 16, 10, 20)]
    [InlineData(AllocatorNames.PymallocDebug, 16, 10, 20)]
    [InlineData(AllocatorNames.PymallocDebug, 200, 4, 12)]
    [InlineData(AllocatorNames.MallocDebug, 1000, 1, 5)]
    public void The_detection_rate_of_a_write_after_free_is_what_the_quarantine_size_implies(string name, int size, int held, int laterFrees)
    {
        // A quarantine of Q bytes holds Q / (size + 32) freed blocks of this size. The target block is written through a
        // stale pointer after j later frees of blocks of the same size (j = 0 .. laterFrees-1). While j < Q / (size + 32)
        // it is still in the quarantine: the write is found when it leaves, or at the flush. After that it has left
        // (checked clean, and given back): the write lands in the allocator's memory and is missed.
        long quarantine = (long)held * (size + 32);
        int expectedDetected = Math.Min(held, laterFrees);
        int detected = 0;
        for (int j = 0; j < laterFrees; j++)
        {
            using RuntimeMemory runtime = Create(name, ViolationAction.Log, quarantine);
            MemoryDomain domain = runtime.Obj;
            byte* target = (byte*)domain.Malloc((nuint)size);
            var later = new byte*[laterFrees];
            for (int i = 0; i < laterFrees; i++)
            {
                later[i] = (byte*)domain.Malloc((nuint)size);
            }

            domain.Free(target);
            for (int i = 0; i < laterFrees; i++)
            {
                if (i == j)
                {
                    target[size / 2] ^= 0xFF; // the data's middle: never an allocator's free-list link
                }

                domain.Free(later[i]);
            }

            runtime.Debugger.FlushQuarantine();
            if (runtime.Debugger.LastViolation is { Kind: MemoryViolationKind.WriteAfterFree } v && v.Address == (nuint)target)
            {
                detected++;
            }

            Assert.True(runtime.Debugger.Violations <= 1);
        }

        output.WriteLine($"{name}, blocks of {size} bytes, quarantine {quarantine} bytes ({held} blocks): " +
                         $"{detected} of {laterFrees} writes after free detected ({100.0 * detected / laterFrees:0.#}%), expected {expectedDetected}");
        Assert.Equal(expectedDetected, detected);
    }
}
