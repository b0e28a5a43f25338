using System.Text;
using Runtime.Memory.Tests.Infrastructure;
using Runtime.Memory.Tracing;
using static Runtime.Memory.Tests.Tracing.MemoryTracerTests;

namespace Runtime.Memory.Tests.Tracing;

/// <summary>Snapshots: statistics and comparison in tracemalloc's text format, filters, the dump file.</summary>
public sealed unsafe class TraceSnapshotTests
{
    /// <summary>A deterministic workload of a pretend Lua program, traced with 3 frames.</summary>
    private static (TraceSnapshot Before, TraceSnapshot After) Workload()
    {
        using RuntimeMemory runtime = Traced(AllocatorNames.Pymalloc, frames: 3);
        var held = new List<(MemoryDomainKind, nint)>();
        void Make(MemoryDomainKind kind, int count, nuint size)
        {
            for (int i = 0; i < count; i++)
            {
                held.Add((kind, (nint)runtime[kind].Malloc(size)));
            }
        }

        using (At("main.lua", 10, "main"))
        {
            using (At("util.lua", 5, "helper"))
            {
                Make(MemoryDomainKind.Obj, 10, 100);
            }

            Make(MemoryDomainKind.Raw, 5, 4096);
            ThreadFrameStack.SetLine(20);
            Make(MemoryDomainKind.Mem, 3, 1 << 20);
        }

        TraceSnapshot before = runtime.Tracer.TakeSnapshot();
        using (At("main.lua", 30, "main"))
        {
            using (At("util.lua", 5, "helper"))
            {
                Make(MemoryDomainKind.Obj, 7, 100);
            }

            using (At("net.lua", 2))
            {
                Make(MemoryDomainKind.Raw, 1, 65536);
            }
        }

        foreach ((MemoryDomainKind kind, nint p) in held.Where(h => h.Item1 == MemoryDomainKind.Raw).Take(4).ToArray())
        {
            runtime[kind].Free((void*)p);
            held.Remove((kind, p));
        }

        TraceSnapshot after = runtime.Tracer.TakeSnapshot();
        foreach ((MemoryDomainKind kind, nint p) in held)
        {
            runtime[kind].Free((void*)p);
        }

        return (before, after);
    }

    private static string Lines<T>(string title, IEnumerable<T> items) =>
        $"{title}\n{string.Join('\n', items.Select(i => i!.ToString()))}\n\n";

    [Fact]
    public void Statistics_by_file_line_and_traceback_and_cumulative_match_the_snapshot()
    {
        (TraceSnapshot before, _) = Workload();
        var text = new StringBuilder();
        text.Append(Lines("[ Top by line ]", before.Statistics(TraceGrouping.Line)));
        text.Append(Lines("[ Top by file ]", before.Statistics(TraceGrouping.File)));
        text.Append(Lines("[ Top by line, cumulative ]", before.Statistics(TraceGrouping.Line, cumulative: true)));
        text.Append(Lines("[ Top by file, cumulative ]", before.Statistics(TraceGrouping.File, cumulative: true)));
        text.Append("[ Top by traceback ]\n");
        foreach (TraceStatistic stat in before.Statistics(TraceGrouping.Traceback))
        {
            text.Append(stat).Append('\n').Append(string.Join('\n', stat.Traceback.Format())).Append('\n');
        }

        TextSnapshot.Verify(text.ToString());
        Assert.Throws<ArgumentException>(() => before.Statistics(TraceGrouping.Traceback, cumulative: true));
    }

    [Fact]
    public void Comparison_with_an_older_snapshot_matches_the_snapshot()
    {
        (TraceSnapshot before, TraceSnapshot after) = Workload();
        TextSnapshot.Verify(
            Lines("[ Difference by line ]", after.CompareTo(before, TraceGrouping.Line))
            + Lines("[ Difference by file ]", after.CompareTo(before, TraceGrouping.File))
            + Lines("[ An empty snapshot against the first: everything released ]", new TraceSnapshot([], 3).CompareTo(before, TraceGrouping.Line)));
    }

    [Fact]
    public void Filters_include_and_exclude_by_file_pattern_line_all_frames_and_domain()
    {
        (TraceSnapshot snapshot, _) = Workload();
        long Count(params TraceFilter[] filters) => snapshot.Filter(filters).TotalCount;

        Assert.Equal(18, Count());
        Assert.Equal(10, Count(new TraceFilter(true, "util.*")));
        Assert.Equal(8, Count(new TraceFilter(false, "util.lua")));
        Assert.Equal(5, Count(new TraceFilter(true, "main.lua", Line: 10)));
        Assert.Equal(18, Count(new TraceFilter(true, "main.lua", AllFrames: true)));   // main.lua is in every traceback
        Assert.Equal(8, Count(new TraceFilter(true, "main.lua")));                     // but the most recent frame of 8
        Assert.Equal(0, Count(new TraceFilter(false, "m?in.lua", AllFrames: true)));
        Assert.Equal(15, Count(new TraceFilter(true, "[mu]*.lua", Domain: null), new TraceFilter(false, "*", Line: 20)));
        Assert.Equal(5, Count(new TraceFilter(true, "*", Domain: 0)));
        Assert.Equal(13, Count(new TraceFilter(false, "*", Domain: 0)));
        Assert.Equal(15, Count(new TraceFilter(true, "util.lua"), new TraceFilter(true, "*", Domain: 0)));  // inclusive filters are or-ed
        Assert.Equal(0, Count(new TraceFilter(true, "[!mu]*")));
        Assert.Equal(10, Count(new TraceFilter(true, "[]u]til.lua")));  // fnmatch: a ']' first belongs to the set
        Assert.Equal(8, Count(new TraceFilter(true, "[!]u]*")));         // negated, with ']' in the set
        Assert.Equal(0, Count(new TraceFilter(true, "[")));              // an unclosed '[' is itself
        Assert.Equal(0, Count(new TraceFilter(true, "[^]*")));           // '^' is a member, not a negation
    }

    [Fact]
    public void A_dump_loads_back_to_the_same_traces_and_statistics()
    {
        (_, TraceSnapshot after) = Workload();
        string path = Path.Combine(Path.GetTempPath(), $"rtm-{Guid.NewGuid():N}.trace");
        try
        {
            after.Dump(path);
            TraceSnapshot loaded = TraceSnapshot.Load(path);
            Assert.Equal(after.TracebackLimit, loaded.TracebackLimit);
            Assert.Equal(after.Traces.OrderBy(t => t.Size).ThenBy(t => t.Traceback), loaded.Traces.OrderBy(t => t.Size).ThenBy(t => t.Traceback));
            Assert.Equal(after.Statistics(TraceGrouping.Traceback), loaded.Statistics(TraceGrouping.Traceback));
            Assert.DoesNotContain(loaded.CompareTo(after, TraceGrouping.Line), d => d.SizeDiff != 0 || d.CountDiff != 0);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_damaged_truncated_foreign_or_newer_file_is_refused_saying_which()
    {
        (_, TraceSnapshot after) = Workload();
        string path = Path.Combine(Path.GetTempPath(), $"rtm-{Guid.NewGuid():N}.trace");
        try
        {
            after.Dump(path);
            byte[] good = File.ReadAllBytes(path);
            string Refusal(byte[] bytes)
            {
                File.WriteAllBytes(path, bytes);
                return Assert.Throws<InvalidDataException>(() => TraceSnapshot.Load(path)).Message;
            }

            byte[] flipped = (byte[])good.Clone();
            flipped[^10] ^= 0x40;
            Assert.Contains("is damaged: its checksum does not match its contents", Refusal(flipped));
            Assert.Contains("is truncated or damaged: its header announces", Refusal(good[..^7]));
            Assert.Contains("is truncated: 12 bytes", Refusal(good[..12]));
            Assert.Contains("is not a RuntimeMem trace snapshot", Refusal("{\"not\": \"a snapshot\"}"u8.ToArray()));
            byte[] newer = (byte[])good.Clone();
            newer[8] = 9;
            Assert.Contains("format version 9; this build reads versions 1 and 2", Refusal(newer));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData(0, false, "0 B")]
    [InlineData(99, false, "99 B")]
    [InlineData(10239, false, "10239 B")]
    [InlineData(10240, false, "10.0 KiB")]
    [InlineData(12.5 * 1024, false, "12.5 KiB")]
    [InlineData(4855 * 1024, false, "4855 KiB")]
    [InlineData(-2048, true, "-2048 B")]
    [InlineData(2048, true, "+2048 B")]
    [InlineData(150.0 * 1024 * 1024, true, "+150 MiB")]
    [InlineData(2.5, false, "2 B")] // printf rounds exact halves to even
    public void Sizes_are_formatted_as_tracemalloc_formats_them(double size, bool sign, string expected) =>
        Assert.Equal(expected, TraceFormat.Size(size, sign));
}
