using Runtime.Host.Lua;
using Runtime.Memory.Tests.Infrastructure;
using Runtime.Memory.Tracing;

namespace Runtime.Memory.Tests.Host;

/// <summary>
/// The Lua frame provider at depth: it examines the frames kept plus <see cref="IFrameProvider.Lookahead"/> levels
/// (C functions included) and no more, so a traceback 100,000 calls deep is the frames kept with a total of "at least
/// kept + Lookahead + 1", one traceback whatever the depth; a shallower stack's total is exact.
/// </summary>
public sealed class LuaFrameProviderDepthTests : IDisposable
{
    private const string Recursion = """
        local depth = tonumber(...)
        keep = {}
        local function rec(d)
          if d == 0 then
            for i = 1, 100 do keep[i] = { i } end
            return 0
          end
          local n = rec(d - 1)
          return n
        end
        rec(depth)
        """;

    // The same through pcall: every other level is a C function (pcall), which is counted but is not a frame.
    private static readonly string ThroughPcall = Recursion.Replace("local n = rec(d - 1)", "local _, n = pcall(rec, d - 1)", StringComparison.Ordinal);

    private readonly string _dir = Directory.CreateTempSubdirectory("runtimemem-luaframes-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>The distinct tracebacks of the blocks allocated at line 5 (the bottom of the recursion), live at the end;
    /// the test fails with them listed when there is not exactly one.</summary>
    private List<Traceback> TracebacksAtTheBottom(string source, int depth, int frames)
    {
        string path = Path.Combine(_dir, "deep.lua");
        File.WriteAllText(path, source);
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Default);
        runtime.Tracer.FrameProvider = new LuaFrameProvider();
        runtime.Tracer.Start(frames);
        LuaScript.Outcome outcome = LuaScript.Run(runtime, path, "deep.lua", [depth.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        Assert.True(outcome.Succeeded, outcome.Error);
        List<Traceback> found = [.. outcome.Sites!.Traces.Select(t => t.Traceback).Where(tb => tb.MostRecent is { File: "deep.lua", Line: 5 }).Distinct()];
        Assert.True(found.Count == 1, string.Join("\n", found.Select(tb => $"{tb.TotalFramesText}: {string.Join(" ", tb.Frames.Select(f => $"{f}/{f.Function}"))}")));
        return found;
    }

    [Fact]
    public void A_shallow_stack_has_its_exact_total()
    {
        Traceback two = Assert.Single(TracebacksAtTheBottom(Recursion, 2, frames: 3));
        Traceback ten = Assert.Single(TracebacksAtTheBottom(Recursion, 10, frames: 3));
        Assert.False(two.TotalFramesIsLowerBound);
        Assert.False(ten.TotalFramesIsLowerBound);
        Assert.Equal(two.TotalFrames + 8, ten.TotalFrames); // 8 more calls of rec, counted one by one
        Assert.Equal(["deep.lua:8", "deep.lua:8", "deep.lua:5"], two.Frames.Select(f => f.ToString()));
        Assert.Equal(1, LuaFrameProvider.Layout); // this Lua's CallInfo layout was checked, so each level costs O(1)
    }

    /// <summary>
    /// A frame's function is named by where it is defined (<c>function &lt;file:line&gt;</c>, the main chunk
    /// <c>&lt;main&gt;</c>), not by how it was called: one function called through two names is one site.
    /// </summary>
    [Fact]
    public void A_function_is_named_where_it_is_defined_so_one_function_is_one_site_whatever_it_is_called()
    {
        const string TwoNames = """
            keep = {}
            local function make(i)
              keep[#keep + 1] = { i }
            end
            local alias = { field = make }
            for i = 1, 50 do make(i) end
            for i = 1, 50 do alias.field(i) end
            """;
        string path = Path.Combine(_dir, "names.lua");
        File.WriteAllText(path, TwoNames);
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Default);
        runtime.Tracer.FrameProvider = new LuaFrameProvider();
        runtime.Tracer.Start(2);
        LuaScript.Outcome outcome = LuaScript.Run(runtime, path, "names.lua", []);
        Assert.True(outcome.Succeeded, outcome.Error);

        List<Traceback> found = [.. outcome.Sites!.Traces.Select(t => t.Traceback).Where(tb => tb.MostRecent is { File: "names.lua", Line: 3 }).Distinct()];
        Assert.Equal(2, found.Count); // two call sites (lines 6 and 7) of one function
        Assert.All(found, tb => Assert.Equal("function <names.lua:2>", tb.MostRecent.Function));
        Assert.Equal(["<main>", "<main>"], found.Select(tb => tb.Frames[0].Function));
        Assert.Equal([6, 7], found.Select(tb => tb.Frames[0].Line).Order());
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(64)]
    public void A_deep_stack_keeps_its_frames_and_reports_a_lower_bound_one_traceback_at_any_depth(int frames)
    {
        int cap = frames + IFrameProvider.Lookahead + 1;
        var atDepth = new[] { 1000, 100_000 }.Select(depth => Assert.Single(TracebacksAtTheBottom(Recursion, depth, frames))).ToList();
        foreach (Traceback tb in atDepth)
        {
            Assert.Equal(frames, tb.Frames.Count);
            Assert.Equal(cap, tb.TotalFrames);
            Assert.True(tb.TotalFramesIsLowerBound);
            Assert.Equal($"{cap}+", tb.TotalFramesText);
            Assert.Equal(new Frame("deep.lua", 5, "function <deep.lua:3>"), tb.MostRecent);
            Assert.All(tb.Frames.Take(frames - 1), f => Assert.Equal(new Frame("deep.lua", 8, "function <deep.lua:3>"), f));
        }

        Assert.Equal(atDepth[0], atDepth[1]); // the same frames 1,000 and 100,000 deep: one traceback
    }

    [Fact]
    public void C_functions_between_lua_frames_count_against_the_levels_examined()
    {
        // 150 levels of rec through pcall (under Lua's limit of 200 nested C calls): 300 levels. With 8 frames kept, the
        // 24 levels examined hold 12 Lua frames, enough; with 30 kept, the 46 levels examined hold only 23.
        Traceback eight = Assert.Single(TracebacksAtTheBottom(ThroughPcall, 150, frames: 8));
        Assert.Equal(8, eight.Frames.Count);
        Assert.Equal(8 + IFrameProvider.Lookahead + 1, eight.TotalFrames);
        Assert.True(eight.TotalFramesIsLowerBound);

        Traceback thirty = Assert.Single(TracebacksAtTheBottom(ThroughPcall, 150, frames: 30));
        Assert.Equal((30 + IFrameProvider.Lookahead) / 2, thirty.Frames.Count);
        Assert.Equal(30 + IFrameProvider.Lookahead + 1, thirty.TotalFrames);
        Assert.True(thirty.TotalFramesIsLowerBound);
    }
}
