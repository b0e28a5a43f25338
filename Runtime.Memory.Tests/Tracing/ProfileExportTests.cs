using System.IO.Compression;
using Runtime.Memory.Tracing;
using Runtime.Memory.Tracing.Pprof;
using static Runtime.Memory.Tests.Tracing.MemoryTracerTests;

namespace Runtime.Memory.Tests.Tracing;

/// <summary>
/// <see cref="TraceSnapshot.WriteProfile"/>: the pprof file is read back through the same generated classes
/// (gunzip, <c>Profile.Parser</c>) and says what the tracer's statistics say.
/// </summary>
public sealed unsafe class ProfileExportTests
{
    /// <summary>Reads a gzip-compressed pprof file.</summary>
    internal static Profile ReadProfile(byte[] file)
    {
        Assert.True(file.Length > 2 && file[0] == 0x1f && file[1] == 0x8b, "a pprof file is gzip-compressed");
        using var gzip = new GZipStream(new MemoryStream(file), CompressionMode.Decompress);
        return Profile.Parser.ParseFrom(gzip);
    }

    /// <summary>The frames of a sample, oldest first (the file has the leaf first).</summary>
    internal static IReadOnlyList<Frame> FramesOf(Profile profile, Sample sample)
    {
        var frames = new List<Frame>();
        foreach (ulong id in sample.LocationId.Reverse())
        {
            Location location = profile.Location.Single(l => l.Id == id);
            Assert.Single(location.Line);
            Function function = profile.Function.Single(f => f.Id == location.Line[0].FunctionId);
            frames.Add(new Frame(profile.StringTable[(int)function.Filename], (int)location.Line[0].Line_, profile.StringTable[(int)function.Name]));
        }

        return frames;
    }

    /// <summary>inuse_space and inuse_objects summed by leaf location (file:line), as <c>Statistics(Line)</c> groups.</summary>
    internal static Dictionary<string, (long Size, long Count)> ByLeafLine(Profile profile)
    {
        int objects = profile.SampleType.ToList().FindIndex(t => profile.StringTable[(int)t.Type] == "inuse_objects");
        int space = profile.SampleType.ToList().FindIndex(t => profile.StringTable[(int)t.Type] == "inuse_space");
        Assert.True(objects >= 0 && space >= 0, "sample types inuse_objects and inuse_space");
        var sums = new Dictionary<string, (long Size, long Count)>();
        foreach (Sample sample in profile.Sample)
        {
            Frame leaf = FramesOf(profile, sample)[^1];
            string key = $"{leaf.File}:{leaf.Line}";
            sums.TryGetValue(key, out (long Size, long Count) sum);
            sums[key] = (sum.Size + sample.Value[space], sum.Count + sample.Value[objects]);
        }

        return sums;
    }

    private static List<nint> Workload(RuntimeMemory runtime)
    {
        var held = new List<nint>();
        void Make(int count, nuint size)
        {
            for (int i = 0; i < count; i++)
            {
                held.Add((nint)runtime.Raw.Malloc(size));
            }
        }

        using (At("main.lua", 1, "<main>"))
        {
            using (At("a.lua", 10, "fa"))
            {
                Make(15, 100);
                using (At("c.lua", 5, "fc"))
                {
                    Make(15, 100);
                }
            }

            using (At("b.lua", 20, "fb"))
            {
                Make(10, 100);
            }

            ThreadFrameStack.SetLine(7);
            Make(3, 4096);
        }

        return held;
    }

    [Fact]
    public void The_profile_read_back_has_the_statistics_of_the_snapshot_by_line_and_by_traceback()
    {
        using RuntimeMemory runtime = Traced(AllocatorNames.Malloc, frames: 3);
        List<nint> held = Workload(runtime);
        TraceSnapshot snapshot = runtime.Tracer.TakeSnapshot();
        var time = new DateTimeOffset(2026, 12, 6, 9, 0, 0, TimeSpan.Zero);
        using var stream = new MemoryStream();
        snapshot.WriteProfile(stream, time);
        Profile profile = ReadProfile(stream.ToArray());

        Assert.Equal("", profile.StringTable[0]);
        Assert.Equal(["inuse_objects/count", "inuse_space/bytes"],
            profile.SampleType.Select(t => $"{profile.StringTable[(int)t.Type]}/{profile.StringTable[(int)t.Unit]}"));
        Assert.Equal("inuse_space", profile.StringTable[(int)profile.DefaultSampleType]);
        Assert.Equal("space/bytes", $"{profile.StringTable[(int)profile.PeriodType.Type]}/{profile.StringTable[(int)profile.PeriodType.Unit]}");
        Assert.Equal(1, profile.Period);
        Assert.Equal(time.ToUnixTimeMilliseconds() * 1_000_000, profile.TimeNanos);
        Assert.Contains(profile.Comment, c => profile.StringTable[(int)c].Contains("exact", StringComparison.Ordinal));
        Assert.All(profile.Location, l => Assert.True(l.Id != 0 && l.MappingId == 1));

        // By leaf line: exactly the statistics (size and count of every key, nothing more).
        Dictionary<string, (long Size, long Count)> expected = snapshot.Statistics(TraceGrouping.Line)
            .ToDictionary(s => s.Traceback.MostRecent.ToString(), s => (s.Size, s.Count));
        Assert.Equal(expected.OrderBy(e => e.Key, StringComparer.Ordinal), ByLeafLine(profile).OrderBy(e => e.Key, StringComparer.Ordinal));
        Assert.Equal((3000L - 1500, 15L), expected["a.lua:10"]); // the workload's own figures, not only agreement
        Assert.Equal((1500L, 15L), expected["c.lua:5"]);
        Assert.Equal((3 * 4096L, 3L), expected["main.lua:7"]);

        // By whole traceback, with the function names: one sample per traceback, its frames leaf first.
        var byTraceback = profile.Sample.ToDictionary(
            s => string.Join(" <- ", FramesOf(profile, s).Select(f => $"{f.File}:{f.Line} {f.Function}")),
            s => (s.Value[1], s.Value[0]));
        Assert.Equal(
            snapshot.Statistics(TraceGrouping.Traceback).ToDictionary(
                s => string.Join(" <- ", s.Traceback.Frames.Select(f => $"{f.File}:{f.Line} {f.Function}")), s => (s.Size, s.Count))
                .OrderBy(e => e.Key, StringComparer.Ordinal),
            byTraceback.OrderBy(e => e.Key, StringComparer.Ordinal));
        Assert.Contains("main.lua:1 <main> <- a.lua:10 fa <- c.lua:5 fc", byTraceback.Keys);

        foreach (nint block in held)
        {
            runtime.Raw.Free((void*)block);
        }
    }

    [Fact]
    public void A_sampled_snapshot_exports_the_scaled_estimates_and_its_sampling_interval()
    {
        const long SampleBytes = 4096;
        using RuntimeMemory runtime = Traced(AllocatorNames.Malloc, frames: 1, sampleBytes: SampleBytes);
        var held = new List<nint>();
        using (At("big.lua", 3, "f"))
        {
            for (int i = 0; i < 2000; i++)
            {
                held.Add((nint)runtime.Raw.Malloc(256));
            }
        }

        TraceSnapshot snapshot = runtime.Tracer.TakeSnapshot();
        using var stream = new MemoryStream();
        snapshot.WriteProfile(stream);
        Profile profile = ReadProfile(stream.ToArray());

        Assert.Equal(SampleBytes, profile.Period);
        Assert.Contains(profile.Comment, c => profile.StringTable[(int)c].Contains("estimates", StringComparison.Ordinal));
        (long size, long count) = ByLeafLine(profile)["big.lua:3"];
        TraceStatistic statistic = Assert.Single(snapshot.Statistics(TraceGrouping.Line));
        Assert.Equal((statistic.Size, statistic.Count), (size, count)); // the estimates, as the statistics give them
        Assert.True(count > snapshot.Traces.Count, $"the values are scaled ({count} blocks estimated from {snapshot.Traces.Count} samples)");

        foreach (nint block in held)
        {
            runtime.Raw.Free((void*)block);
        }
    }

    [Fact]
    public void SaveProfile_writes_the_same_bytes_as_WriteProfile()
    {
        using RuntimeMemory runtime = Traced(AllocatorNames.Malloc, frames: 3);
        List<nint> held = Workload(runtime);
        TraceSnapshot snapshot = runtime.Tracer.TakeSnapshot();
        var time = DateTimeOffset.UnixEpoch.AddDays(1);
        string path = Path.Combine(Path.GetTempPath(), $"runtimemem-{Guid.NewGuid():N}.pb.gz");
        try
        {
            snapshot.SaveProfile(path, time);
            using var stream = new MemoryStream();
            snapshot.WriteProfile(stream, time);
            Assert.Equal(ReadProfile(stream.ToArray()), ReadProfile(File.ReadAllBytes(path)));
        }
        finally
        {
            File.Delete(path);
            foreach (nint block in held)
            {
                runtime.Raw.Free((void*)block);
            }
        }
    }
}
