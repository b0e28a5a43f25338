using System.Globalization;
using System.Xml.Linq;
using Runtime.Host;
using Runtime.Memory.Tests.Tracing;
using Runtime.Memory.Tracing;
using Runtime.Memory.Tracing.Pprof;

namespace Runtime.Memory.Tests.Host;

/// <summary>
/// The host's pictures of the heap: <c>--Host:Profile</c> (pprof), <c>--Host:FlameGraph</c> (SVG) and the Lua
/// <c>memory.dump_profile</c>, read back and compared with the tracer's statistics. In this class so that they run
/// one at a time with the environment variable tests (an allocator set in the environment would reach them).
/// </summary>
public sealed partial class HostProgramTests
{
    /// <summary>The top sites the report prints, rebuilt from a profile: inuse_space and inuse_objects by leaf
    /// location (file:line), ordered and printed as <see cref="TraceSnapshot.Statistics"/> orders and prints them.</summary>
    private static List<string> TopSitesOf(Profile profile) =>
        ProfileExportTests.ByLeafLine(profile)
            .Select(e =>
            {
                int colon = e.Key.LastIndexOf(':');
                var key = new Traceback([new Frame(e.Key[..colon], int.Parse(e.Key[(colon + 1)..], CultureInfo.InvariantCulture))]);
                return new TraceStatistic(key, e.Value.Size, e.Value.Count);
            })
            .OrderByDescending(s => s.Size).ThenByDescending(s => s.Count).ThenByDescending(s => s.Traceback)
            .Select(s => s.ToString())
            .ToList();

    /// <summary>The lines after the report's "top N allocation sites" heading.</summary>
    private static List<string> PrintedTopSites(string output)
    {
        string[] lines = output.Split('\n');
        int heading = Array.FindIndex(lines, l => l.StartsWith("top ", StringComparison.Ordinal) && l.Contains("allocation sites by Lua line", StringComparison.Ordinal));
        Assert.True(heading >= 0, "the report lists the top sites:\n" + output);
        return lines.Skip(heading + 1).TakeWhile(l => l.Length > 0).ToList();
    }

    [Fact]
    public async Task The_profile_the_host_writes_for_the_demo_has_the_top_sites_the_report_prints()
    {
        string path = Path.Combine(_tempRoot, "demo.pb.gz");
        var (exit, output, error) = await Run(
            ["--RuntimeMemory:Tracing:Enabled=true", "--RuntimeMemory:Tracing:Frames=8", "--Host:TopSites=1000", $"--Host:Profile={path}"]);
        Assert.True(exit == HostProgram.ExitOk, $"exit {exit}: {error}");
        Profile profile = ProfileExportTests.ReadProfile(File.ReadAllBytes(path));

        List<string> printed = PrintedTopSites(output);
        Assert.True(printed.Count >= 5, "the demo leaves several sites live:\n" + output);
        Assert.Equal(printed, TopSitesOf(profile)); // every site, its size, count and rank
        Assert.Contains(printed, l => l.StartsWith("demo.lua:", StringComparison.Ordinal));

        // The locations are Lua frames: demo.lua lines with their function (the main chunk or "function <demo.lua:N>"),
        // or the tracer's <unknown>:0 for blocks allocated outside a Lua call.
        var frames = profile.Sample.SelectMany(s => ProfileExportTests.FramesOf(profile, s)).ToList();
        Assert.Contains(frames, f => f.File == "demo.lua" && f.Line > 0 && f.Function == "<main>");
        Assert.All(frames, f => Assert.True(
            (f.File == "demo.lua" && f.Line > 0 && (f.Function == "<main>" || f.Function!.StartsWith("function <demo.lua:", StringComparison.Ordinal)))
            || f == new Frame("<unknown>", 0, "<unknown>"), f.ToString() + " " + f.Function));
    }

    [Fact]
    public async Task Memory_dump_profile_writes_the_snapshot_memory_top_prints()
    {
        string profilePath = Path.Combine(_tempRoot, "lua.pb.gz").Replace('\\', '/');
        string topPath = Path.Combine(_tempRoot, "top.txt").Replace('\\', '/');
        string script = Path.Combine(_tempRoot, "dump.lua");
        File.WriteAllText(script, $$"""
            local ok, message = memory.dump_profile("{{profilePath}}")
            assert(ok == nil and message:find("not tracing", 1, true), tostring(message))
            memory.start(4)
            local keep = {}
            local function grow(n) for i = 1, n do keep[#keep + 1] = string.rep("x", 200) .. i end end
            grow(300)
            grow(100)
            collectgarbage()
            local id = memory.snapshot()
            assert(memory.dump_profile("{{profilePath}}", id) == true)
            local bad, why = memory.dump_profile("{{_tempRoot}}/no/such/dir/x.pb.gz")
            assert(bad == nil and why:find("cannot write", 1, true), tostring(why))
            assert(memory.dump_profile(42) == nil)
            local f = assert(io.open("{{topPath}}", "w"))
            f:write(memory.top(1000, id))
            f:close()
            """);
        var (exit, _, error) = await Run([script]);
        Assert.True(exit == HostProgram.ExitOk, $"exit {exit}: {error}");

        Profile profile = ProfileExportTests.ReadProfile(File.ReadAllBytes(profilePath));
        List<string> top = File.ReadAllText(topPath).Split('\n', StringSplitOptions.RemoveEmptyEntries).ToList();
        Assert.Equal(top, TopSitesOf(profile));
        Assert.True(top.Count > 1, string.Join("\n", top));
        Assert.StartsWith($"{script}:5: ", top[0]); // the 400 strings grow() keeps, the largest site
    }

    [Fact]
    public async Task The_flame_graph_the_host_writes_has_the_lua_frames_as_rows_and_widths_by_bytes()
    {
        string svgPath = Path.Combine(_tempRoot, "flame.svg");
        string profilePath = Path.Combine(_tempRoot, "flame.pb.gz");
        string script = Path.Combine(_tempRoot, "flame.lua");
        File.WriteAllText(script, """
            keep = {}
            local function a() for i = 1, 300 do keep[#keep + 1] = string.rep("a", 1000) .. i end end
            local function b() for i = 1, 100 do keep[#keep + 1] = string.rep("b", 1000) .. i end end
            a()
            b()
            collectgarbage() -- the intermediate strings of string.rep ... i are garbage: only what keep holds stays live
            """);
        var (exit, _, error) = await Run(
            ["--RuntimeMemory:Tracing:Enabled=true", "--RuntimeMemory:Tracing:Frames=4", $"--Host:FlameGraph={svgPath}", $"--Host:Profile={profilePath}", script]);
        Assert.True(exit == HostProgram.ExitOk, $"exit {exit}: {error}");

        XNamespace svg = "http://www.w3.org/2000/svg";
        var bars = XDocument.Load(svgPath).Root!.Elements(svg + "g").Select(g =>
        {
            string title = g.Element(svg + "title")!.Value;
            XElement rect = g.Element(svg + "rect")!;
            double A(string name) => double.Parse(rect.Attribute(name)!.Value, CultureInfo.InvariantCulture);
            return (Label: title[..title.LastIndexOf(": ", StringComparison.Ordinal)], Title: title, X: A("x"), Y: A("y"), Width: A("width"));
        }).ToList();

        var all = bars.Single(b => b.Label == "all");
        var callA = bars.Single(b => b.Label == $"{script}:4 (<main>)");
        var inA = bars.Single(b => b.Label == $"{script}:2 (function <{script}:2>)");
        var inB = bars.Single(b => b.Label == $"{script}:3 (function <{script}:3>)");
        Assert.True(all.Y > callA.Y && callA.Y > inA.Y, "the root at the bottom, the caller (main chunk) below the callee");
        Assert.Equal(callA.Y - TraceSnapshot.FlameGraphRowHeight, inA.Y);
        Assert.InRange(inA.X, callA.X, callA.X + callA.Width); // the callee stands on its caller
        Assert.InRange(inA.Width / inB.Width, 2.7, 3.3);       // 300 strings of ~1 KiB against 100

        // The root's bytes are the profile's, written from the same snapshot.
        long space = Profile_total(ProfileExportTests.ReadProfile(File.ReadAllBytes(profilePath)));
        Assert.Equal($"all: {space.ToString("N0", CultureInfo.InvariantCulture)} bytes (100.00%)", all.Title[..all.Title.LastIndexOf(',')]);
    }

    private static long Profile_total(Profile profile) => profile.Sample.Sum(s => s.Value[1]);

    [Fact]
    public async Task A_flame_graph_or_profile_without_tracing_is_a_configuration_error_naming_the_key()
    {
        foreach (string key in new[] { "Host:FlameGraph", "Host:Profile" })
        {
            var (exit, output, error) = await Run([$"--{key}={Path.Combine(_tempRoot, "out")}"]);
            Assert.Equal(HostProgram.ExitConfigurationError, exit);
            Assert.Equal("", output);
            string line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
            Assert.Contains(key, line);
            Assert.Contains("RuntimeMemory:Tracing:Enabled=true", line);
        }

        var (exit2, _, error2) = await Run(["--RuntimeMemory:Tracing:Enabled=true", $"--Host:Profile={Path.Combine(_tempRoot, "missing", "x.pb.gz")}"]);
        Assert.Equal(HostProgram.ExitConfigurationError, exit2);
        Assert.Contains("Host:Profile", error2);
        Assert.Contains("does not exist", error2);
        Assert.False(File.Exists(Path.Combine(_tempRoot, "out")));
    }

    [Fact]
    public async Task A_script_that_stops_tracing_gets_no_profile_and_the_host_says_so_and_exits_1()
    {
        string path = Path.Combine(_tempRoot, "stopped.pb.gz");
        string script = Path.Combine(_tempRoot, "stop.lua");
        File.WriteAllText(script, "memory.stop()\n");
        var (exit, _, error) = await Run(["--RuntimeMemory:Tracing:Enabled=true", $"--Host:Profile={path}", script]);
        Assert.Equal(HostProgram.ExitScriptError, exit);
        Assert.Contains("Host:Profile: nothing written", error);
        Assert.False(File.Exists(path));
    }
}
