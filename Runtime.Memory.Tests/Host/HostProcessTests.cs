using Runtime.Host;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Host;

/// <summary>
/// Runtime.Host launched as a process, as a user runs it: the bundled demo, scripts with arguments and awkward paths,
/// Lua errors, a memory bomb under a budget, every allocator name from each configuration source, bad configuration.
/// </summary>
public sealed class HostProcessTests : IDisposable
{
    private const string Host = "Runtime.Host";
    private static readonly Dictionary<string, string> NoEnvironment = [];
    private readonly string _dir = Directory.CreateTempSubdirectory("runtimemem-lua-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Script(string name, string source)
    {
        string path = Path.Combine(_dir, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, source);
        return path;
    }

    private ChildProcess.Result Run(params string[] args) => ChildProcess.RunIn(_dir, Host, NoEnvironment, args);

    [SkippableFact]
    public void The_demo_runs_and_its_report_matches_the_snapshot()
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Zlib); // the report has zlib's lines
        ChildProcess.Result run = Run();
        Assert.Equal("", run.Stderr);
        Assert.Equal(HostProgram.ExitOk, run.ExitCode);
        Assert.Contains("after lua_close 0 blocks, 0 bytes live", run.Stdout);
        TextSnapshot.Verify(ScrubZlib(run.Stdout));
    }

    /// <summary>The README's copy of the demo's output is the output itself (zlib's figures aside, as in the snapshot).</summary>
    [SkippableFact]
    public void The_readme_shows_the_demo_output_as_it_is()
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Zlib);
        string? root = AppContext.BaseDirectory;
        while (root is not null && !File.Exists(Path.Combine(root, "RuntimeMem.sln")))
        {
            root = Path.GetDirectoryName(root.TrimEnd(Path.DirectorySeparatorChar));
        }

        Assert.True(root is not null, "the repository root (RuntimeMem.sln) is not above the test binaries");
        string readme = File.ReadAllText(Path.Combine(root, "README.md")).ReplaceLineEndings("\n");
        int start = readme.IndexOf("\ntables: ", StringComparison.Ordinal) + 1;
        int end = readme.IndexOf("\n```", start, StringComparison.Ordinal);
        Assert.True(start > 0 && end > start, "README.md has no block with the demo's output");

        ChildProcess.Result run = Run();
        Assert.Equal(ScrubZlib(run.Stdout.ReplaceLineEndings("\n")).TrimEnd(), ScrubZlib(readme[start..end]).TrimEnd());
    }

    /// <summary>The figures that depend on the system's zlib version (its compressed size, what it allocates in raw,
    /// and so the raw and total rows), as <c>#</c>; the rest of the demo's report is the same on every machine. Checked by pattern in
    /// <see cref="The_demo_compresses_through_zlib_routed_into_raw_and_nothing_stays_live"/>.</summary>
    private static string ScrubZlib(string report)
    {
        report = System.Text.RegularExpressions.Regex.Replace(report, @"(?m)^(zlib: \d+ bytes -> )\d+", "$1#");
        report = System.Text.RegularExpressions.Regex.Replace(report, @"(?m)^(zlib \(raw domain, tag 'zlib'\): peak )[\d,]+", "$1#");
        report = System.Text.RegularExpressions.Regex.Replace(report, @"(?m)^(raw|total) .*$",
            line => System.Text.RegularExpressions.Regex.Replace(line.Value, @"\d[\d,]*", "#")); // raw holds zlib's blocks, total adds them
        return report;
    }

    [Fact]
    public void A_script_gets_its_arguments_in_arg_and_as_varargs_and_switches_after_it_are_its_own()
    {
        Script("args.lua", """print(arg[0], #arg, select('#', ...), ...)""");
        ChildProcess.Result run = Run("--RuntimeMemory:Allocator=malloc", "args.lua", "one", "two words", "--RuntimeMemory:Allocator=bogus");
        Assert.Equal("", run.Stderr);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("args.lua\t3\t3\tone\ttwo words\t--RuntimeMemory:Allocator=bogus\n", run.Stdout); // a script's run prints no report
    }

    [Fact]
    public void An_absolute_script_path_with_spaces_runs_and_require_and_dofile_work_from_the_working_directory()
    {
        Script("lib/helper.lua", "return { twice = function(x) return 2 * x end }");
        Script("data.lua", "return 21");
        string path = Script("dir with spaces/my script.lua", """
            package.path = "./lib/?.lua;" .. package.path
            local helper = require "helper"
            local f = io.open("out.txt", "w"); f:write("written"); f:close()
            print(helper.twice(dofile("data.lua")), io.open("out.txt"):read("a"))
            """);
        Assert.StartsWith("/", path);
        ChildProcess.Result run = Run(path);
        Assert.Equal("", run.Stderr);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("42\twritten\n", run.Stdout);
    }

    [Fact]
    public void A_syntax_error_prints_as_lua_does_and_exits_1()
    {
        Script("syntax.lua", "local x = = 1\n");
        ChildProcess.Result run = Run("syntax.lua");
        Assert.Equal(HostProgram.ExitScriptError, run.ExitCode);
        Assert.Equal("lua: syntax.lua:1: unexpected symbol near '='\n", run.Stderr);
    }

    [Fact]
    public void A_runtime_error_prints_the_message_and_the_traceback_and_exits_1()
    {
        Script("boom.lua", "local function f() error('boom') end\nf()\n");
        ChildProcess.Result run = Run("boom.lua");
        Assert.Equal(HostProgram.ExitScriptError, run.ExitCode);
        Assert.StartsWith("lua: boom.lua:1: boom\nstack traceback:\n", run.Stderr);
        Assert.Contains("boom.lua:1: in local 'f'", run.Stderr);
        Assert.Contains("boom.lua:2: in main chunk", run.Stderr);
    }

    [Fact]
    public void A_missing_script_is_an_error_naming_it()
    {
        ChildProcess.Result run = Run("nothere.lua");
        Assert.Equal(HostProgram.ExitScriptError, run.ExitCode);
        Assert.Equal("lua: cannot open nothere.lua\n", run.Stderr);
    }

    private const string Bomb = """
        local function bomb()
          local t = {}
          for i = 1, 1e9 do t[i] = string.rep("x", 1000) .. i end
        end

        """;

    [Fact]
    public void A_memory_bomb_under_a_budget_is_caught_by_pcall_and_the_host_keeps_running_and_reports_the_refusals()
    {
        Script("bomb.lua", Bomb + """
            local ok, err = pcall(bomb)
            collectgarbage()
            print(ok, err, memory.used() < 1000000)
            """);
        ChildProcess.Result run = Run("--RuntimeMemory:Limits:Obj:MaxBytes=4000000", "--Host:Report=true", "bomb.lua");
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("false\tnot enough memory\ttrue\n", run.Stdout);
        Assert.Matches(@"lua state \(obj domain, tag 'lua'\): peak [\d,]+ bytes; [1-9][\d,]* allocations refused; after lua_close 0 blocks, 0 bytes live", run.Stdout);
        Assert.Matches(@"budget obj: 4,000,000 bytes, [1-9][\d,]* refused", run.Stdout);
        Assert.Contains("Runtime.Memory[4301]", run.Stdout); // the limit-reached log (console logging, Warning)
    }

    [Fact]
    public void An_uncaught_memory_bomb_under_a_budget_is_a_clean_lua_error()
    {
        Script("bomb.lua", Bomb + "bomb()\n");
        ChildProcess.Result run = Run("--RuntimeMemory:Limits:Obj:MaxBytes", "4000000", "bomb.lua");
        Assert.True(run.ExitCode == HostProgram.ExitScriptError, $"exit {run.ExitCode}: {run.Stderr}");

        // A refusal in the VM is a memory error (the message alone); one in a C function's buffer (string.rep's) is
        // raised as an ordinary error with that message, which gets the traceback. Either is lua's clean exit.
        Assert.Matches(@"^lua: not enough memory\n(stack traceback:\n(\t.*\n)+)?$", run.Stderr);
    }

    public static TheoryData<string> AllocatorNames() => ["default", "debug", "malloc", "malloc_debug", "pymalloc", "pymalloc_debug", "mimalloc", "mimalloc_debug"];

    [SkippableTheory]
    [MemberData(nameof(AllocatorNames))]
    public void Every_allocator_name_works_from_a_switch_and_from_the_environment(string allocator)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        string script = Script("tiny.lua", "local t = {} for i = 1, 1000 do t[i] = tostring(i) end print(#t)");

        ChildProcess.Result bySwitch = Run($"--RuntimeMemory:Allocator={allocator}", "--Host:Report=true", script);
        ChildProcess.Result byEnvironment = ChildProcess.RunIn(_dir, Host, new Dictionary<string, string> { ["RuntimeMemory__Allocator"] = allocator }, "--Host:Report=true", script);

        foreach (ChildProcess.Result run in new[] { bySwitch, byEnvironment })
        {
            Assert.True(run.ExitCode == 0, $"{allocator}: exit {run.ExitCode}: {run.Stderr}");
            Assert.StartsWith("1000\n", run.Stdout);
            Assert.Contains($"RuntimeMem host: allocator '{allocator}'", run.Stdout);
            Assert.Contains("after lua_close 0 blocks, 0 bytes live", run.Stdout);
        }
    }

    [SkippableFact]
    public void The_demo_compresses_through_zlib_routed_into_raw_and_nothing_stays_live()
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Zlib);
        ChildProcess.Result run = Run();
        Assert.Equal(0, run.ExitCode);
        Assert.Matches(@"\nzlib: 37000 bytes -> \d+ compressed -> identical\n", run.Stdout);
        Assert.Matches(@"\nzlib \(raw domain, tag 'zlib'\): peak [1-9][\d,]+ bytes; after the run 0 blocks live\n", run.Stdout);
        Assert.Matches(@"\nraw +malloc +0 +0 +[1-9][\d,]+ +[1-9]", run.Stdout); // raw saw zlib's allocations, and holds none
    }

    [Fact]
    public void The_switch_wins_over_the_environment()
    {
        string script = Script("tiny.lua", "print(1)");
        ChildProcess.Result run = ChildProcess.RunIn(_dir, Host, new Dictionary<string, string> { ["RuntimeMemory__Allocator"] = "malloc" },
            "--RuntimeMemory:Allocator=pymalloc", "--Host:Report=true", script);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("RuntimeMem host: allocator 'pymalloc'", run.Stdout);
    }

    [Theory]
    [InlineData("--RuntimeMemory:Allocator=bogus", "RuntimeMemory:Allocator")]
    [InlineData("--Host:TopSites=0", "Host:TopSites = '0'")]
    [InlineData("--Host:Reportt=true", "Host:Reportt")]
    [InlineData("--RuntimeMemory:Limits:Obj:MaxBytes=lots", "RuntimeMemory:Limits:Obj:MaxBytes")]
    public void Bad_configuration_stops_the_host_with_a_clear_error(string setting, string named)
    {
        ChildProcess.Result run = Run(setting, "whatever.lua");
        Assert.Equal(HostProgram.ExitConfigurationError, run.ExitCode);
        Assert.Equal("", run.Stdout);
        Assert.StartsWith("Runtime.Host: configuration error: ", run.Stderr);
        Assert.Contains(named, run.Stderr);
    }

    [Fact]
    public void Tracing_groups_the_report_by_lua_file_and_line()
    {
        Script("sites.lua", """
            keep = {}
            for i = 1, 2000 do keep[i] = { i } end
            for i = 1, 100 do keep[#keep + 1] = string.rep("s", 300) .. i end
            """);
        ChildProcess.Result run = Run("--RuntimeMemory:Tracing:Enabled=true", "--Host:Report=true", "--Host:TopSites=3", "sites.lua");
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("top 3 allocation sites by Lua line, live before lua_close (tracing, 1 frames):", run.Stdout);
        Assert.Contains("\nsites.lua:2: size=141 KiB, count=4000, average=36 B\n", run.Stdout); // 2,000 tables and their array parts
        Assert.Matches(@"\nsites\.lua:3: size=1\d\d KiB, count=[1-9]\d\d, average=4\d\d B\n", run.Stdout); // 100 strings of 300+ bytes, and what building them left
    }

    [Theory]
    [InlineData("default")]
    [InlineData("pymalloc_debug")]
    public void The_demo_runs_traced_with_deep_tracebacks_while_lua_moves_its_stacks(string allocator)
    {
        // Coroutines and deep calls make Lua grow and move stacks; reading the call stack during such a resize (its
        // frames are offsets meanwhile) crashed the host before LuaRouting.IsResizing.
        ChildProcess.Result run = Run($"--RuntimeMemory:Allocator={allocator}", "--RuntimeMemory:Tracing:Enabled=true", "--RuntimeMemory:Tracing:Frames=16");
        Assert.True(run.ExitCode == 0, $"exit {run.ExitCode}: {run.Stderr}");
        Assert.Contains("coroutines: 10000 items", run.Stdout);
        Assert.Matches(@"\ndemo\.lua:\d+: size=", run.Stdout);
        Assert.Contains("after lua_close 0 blocks, 0 bytes live", run.Stdout);
    }

    [Fact]
    public void The_memory_module_traces_takes_snapshots_and_compares_them_by_line()
    {
        Script("mod.lua", """
            assert(memory.start(2))
            local t = {}
            for i = 1, 500 do t[i] = { i } end
            local first = memory.snapshot()
            for i = 1, 300 do t[#t + 1] = string.rep("z", 200) .. i end
            local current, peak = memory.traced()
            print(memory.is_tracing(), current > 0, peak >= current)
            print(memory.top(2))
            print(memory.compare(memory.snapshot(), first, 1))
            print(memory.compare(99, first))
            print(memory.start(0))
            memory.stop()
            print(memory.is_tracing(), memory.snapshot())
            """);
        ChildProcess.Result run = Run("mod.lua");
        Assert.Equal("", run.Stderr);
        Assert.Equal(0, run.ExitCode);
        string[] lines = run.Stdout.Split('\n');
        Assert.Equal("true\ttrue\ttrue", lines[0]);
        Assert.Matches(@"^mod\.lua:5: size=1\d\d KiB, count=[3-9]\d\d, average=2\d\d B$", lines[1]); // 300 strings of 200+ bytes, and their parts
        Assert.Equal("mod.lua:3: size=35.2 KiB, count=1000, average=36 B", lines[2]); // 500 tables and their array parts
        Assert.Matches(@"^mod\.lua:5: size=1\d\d KiB \(\+1\d\d KiB\), count=([3-9]\d\d) \(\+\1\), average=2\d\d B$", lines[4]); // all new since the first snapshot
        Assert.Contains("nil\tmemory.compare: no snapshot number 99: memory.snapshot() returns 1 to 2", run.Stdout);
        Assert.Contains("false\tmemory.start: frames must be an integer from 1 to 65535", run.Stdout);
        Assert.Contains("false\tnil\tmemory.snapshot: not tracing (call memory.start() first)", run.Stdout);
    }
}
