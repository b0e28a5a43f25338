using Runtime.Host;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Host;

/// <summary>
/// Runtime.Host end to end, in process: configuration sources and precedence, the report, exit codes.
/// The tests of this class run one at a time (xunit runs a class's tests sequentially), which the environment
/// variable tests rely on.
/// </summary>
public sealed partial class HostProgramTests : IDisposable
{
    private readonly string _tempRoot = Directory.CreateTempSubdirectory("runtimemem-host-").FullName;

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("RuntimeMemory__Allocator", null);
        Directory.Delete(_tempRoot, recursive: true);
    }

    private static async Task<(int Exit, string Out, string Err)> Run(string[] args, string? contentRoot = null)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = await HostProgram.RunAsync(args, stdout, stderr, contentRoot);
        return (exit, stdout.ToString(), stderr.ToString());
    }

    private string ContentRootWith(string appsettingsJson)
    {
        File.WriteAllText(Path.Combine(_tempRoot, "appsettings.json"), appsettingsJson);
        return _tempRoot;
    }

    [Fact]
    public async Task The_demo_report_in_process_names_the_script_and_finds_nothing_live_after_lua_close()
    {
        var (exit, output, error) = await Run([]);
        Assert.Equal("", error);
        Assert.Equal(HostProgram.ExitOk, exit);
        Assert.Contains("\nscript: demo.lua: ok\n", output);
        Assert.Contains("after lua_close 0 blocks, 0 bytes live\n", output);
    }

    [Fact]
    public async Task With_the_bundled_defaults_the_host_runs_on_the_default_allocator()
    {
        var (exit, output, _) = await Run([]);
        Assert.Equal(0, exit);
        Assert.StartsWith("RuntimeMem host: allocator 'default'", output);
    }

    [Fact]
    public async Task A_command_line_switch_overrides_the_file()
    {
        var (exit, output, _) = await Run(["--RuntimeMemory:Allocator=malloc"]);
        Assert.Equal(0, exit);
        Assert.StartsWith("RuntimeMem host: allocator 'malloc'", output);
    }

    [Fact]
    public async Task An_environment_variable_overrides_the_file_and_a_switch_overrides_both()
    {
        Environment.SetEnvironmentVariable("RuntimeMemory__Allocator", "malloc");
        var (exit, output, _) = await Run([]);
        Assert.Equal(0, exit);
        Assert.StartsWith("RuntimeMem host: allocator 'malloc'", output);

        Environment.SetEnvironmentVariable("RuntimeMemory__Allocator", "bogus-from-env");
        (exit, output, _) = await Run(["--RuntimeMemory:Allocator=default"]);
        Assert.Equal(0, exit);
        Assert.StartsWith("RuntimeMem host: allocator 'default'", output);
    }

    [SkippableTheory]
    [InlineData("default")]
    [InlineData("debug")]
    [InlineData("malloc")]
    [InlineData("malloc_debug")]
    [InlineData("pymalloc")]
    [InlineData("pymalloc_debug")]
    [InlineData("mimalloc")]
    [InlineData("mimalloc_debug")]
    public async Task Every_allocator_name_is_read_from_appsettings_json_in_the_content_root(string allocator)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        string root = ContentRootWith($$"""{ "RuntimeMemory": { "Allocator": "{{allocator}}" } }""");
        var (exit, output, error) = await Run([], root);
        Assert.True(exit == 0, $"exit {exit}: {error}");
        Assert.StartsWith($"RuntimeMem host: allocator '{allocator}'", output);
        Assert.Contains("after lua_close 0 blocks, 0 bytes live", output);
    }

    [SkippableTheory]
    [InlineData("debug")]
    [InlineData("malloc_debug")]
    [InlineData("pymalloc_debug")]
    [InlineData("mimalloc_debug")]
    public async Task The_workload_runs_clean_under_the_debug_hooks(string allocator)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        var (exit, output, error) = await Run([$"--RuntimeMemory:Allocator={allocator}", "--RuntimeMemory:Debug:OnViolation=Throw"]);
        Assert.Equal("", error);
        Assert.Equal(HostProgram.ExitOk, exit);
        Assert.StartsWith($"RuntimeMem host: allocator '{allocator}'", output);
        Assert.Contains("script: demo.lua: ok", output);
        Assert.Contains("debug > ", output);
        Assert.Contains("debug hooks: 0 violations found (OnViolation=Throw)", output);
    }

    [Fact]
    public async Task A_bogus_allocator_exits_non_zero_with_one_line_naming_key_value_and_allowed_names()
    {
        var (exit, output, error) = await Run(["--RuntimeMemory:Allocator=bogus"]);
        Assert.Equal(HostProgram.ExitConfigurationError, exit);
        Assert.Equal("", output);
        string line = Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("RuntimeMemory:Allocator", line);
        Assert.Contains("'bogus'", line);
        Assert.Contains("default, debug, malloc, malloc_debug, pymalloc, pymalloc_debug", line);
        Assert.Contains("pymalloc", line);
    }

    [Fact]
    public async Task A_wrong_type_in_appsettings_json_is_a_configuration_error()
    {
        string root = ContentRootWith("""{ "RuntimeMemory": { "Allocator": { "Name": "malloc" } } }""");
        var (exit, _, error) = await Run([], root);
        Assert.Equal(HostProgram.ExitConfigurationError, exit);
        Assert.Contains("RuntimeMemory:Allocator must be a string", error);
    }

    [Fact]
    public async Task Malformed_appsettings_json_is_a_configuration_error_naming_the_file()
    {
        string root = ContentRootWith("""{ "RuntimeMemory": { "Allocator": "malloc", } ,, }""");
        var (exit, output, error) = await Run([], root);
        Assert.Equal(HostProgram.ExitConfigurationError, exit);
        Assert.Equal("", output);
        Assert.StartsWith("Runtime.Host: configuration error:", error);
        Assert.Contains("appsettings.json", error);
        Assert.Contains("BytePositionInLine", error); // where the JSON breaks, from the JSON reader
        Assert.Single(error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
    }

    [Fact]
    public async Task An_unknown_key_is_a_configuration_error()
    {
        var (exit, _, error) = await Run(["--RuntimeMemory:Alocator=malloc"]);
        Assert.Equal(HostProgram.ExitConfigurationError, exit);
        Assert.Contains("RuntimeMemory:Alocator is not a setting of RuntimeMemory", error);
    }

    [Theory]
    [InlineData("default")]
    [InlineData("pymalloc")]
    public async Task The_host_runs_on_the_small_object_allocator_from_configuration(string allocator)
    {
        string root = ContentRootWith($$"""{ "RuntimeMemory": { "Allocator": "{{allocator}}" } }""");
        var (exit, output, _) = await Run([], root);
        Assert.Equal(0, exit);
        Assert.StartsWith($"RuntimeMem host: allocator '{allocator}'", output);
        Assert.Matches(@"\nmem +pymalloc +0 +0 ", output);
        Assert.Matches(@"\nobj +pymalloc +0 +0 ", output);
        Assert.Matches(@"\nraw +malloc +0 +0 ", output);
    }

    [Fact]
    public async Task A_switch_adds_the_small_object_statistics_of_mem_and_obj()
    {
        var (exit, output, _) = await Run(["--Host:AllocatorStatistics=true"]);
        Assert.Equal(0, exit);
        Assert.Contains("small-object allocator of the mem domain:\nSmall block threshold = 512, in 32 size classes.", output);
        Assert.Contains("small-object allocator of the obj domain:", output);
        Assert.Contains("# arenas allocated current         =", output);
    }

    [Fact]
    public async Task Statistics_on_malloc_say_that_no_domain_uses_the_small_object_allocator()
    {
        var (exit, output, _) = await Run(["--Host:AllocatorStatistics=true", "--RuntimeMemory:Allocator=malloc"]);
        Assert.Equal(0, exit);
        Assert.Contains("no domain runs on the small-object allocator", output);
    }

    [Fact]
    public async Task A_statistics_switch_that_is_not_a_boolean_is_a_configuration_error()
    {
        var (exit, _, error) = await Run(["--Host:AllocatorStatistics=maybe"]);
        Assert.Equal(HostProgram.ExitConfigurationError, exit);
        Assert.Contains("Host:AllocatorStatistics = 'maybe': not a boolean. Allowed values: true, false.", error);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("soon")]
    [InlineData("86401")]
    public async Task Run_seconds_outside_0_to_a_day_is_a_configuration_error(string value)
    {
        var (exit, _, error) = await Run([$"--Host:RunSeconds={value}"]);
        Assert.Equal(HostProgram.ExitConfigurationError, exit);
        Assert.Contains($"Host:RunSeconds = '{value}': not a number of seconds (0: run the script once). Allowed values: an integer from 0 to 86400.", error);
    }

    [Fact]
    public async Task Run_seconds_repeats_the_script_for_that_long()
    {
        // A script of a few milliseconds, so that a second holds many runs even on a slow, loaded machine.
        string script = Path.Combine(_tempRoot, "short.lua");
        File.WriteAllText(script, "local t = {} for i = 1, 200 do t[i] = {i} end");
        var (onceExit, once, _) = await Run(["--Host:Report=true", script]);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var (exit, repeated, _) = await Run(["--Host:Report=true", "--Host:RunSeconds=1", script]);
        Assert.Equal(0, onceExit);
        Assert.Equal(0, exit);
        Assert.True(clock.Elapsed >= TimeSpan.FromSeconds(1), $"took {clock.Elapsed}");
        Assert.True(Operations(repeated) >= 2 * Operations(once), $"once: {Operations(once)}, for a second: {Operations(repeated)}");

        // The obj row's allocations column: every run of the demo adds its own.
        static long Operations(string report) => long.Parse(
            System.Text.RegularExpressions.Regex.Match(report, @"\nobj +\S+ +[\d,]+ +[\d,]+ +[\d,]+ +([\d,]+) ").Groups[1].Value.Replace(",", ""),
            System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task Help_prints_usage_and_succeeds()
    {
        var (exit, output, _) = await Run(["--help"]);
        Assert.Equal(0, exit);
        Assert.StartsWith("Usage: Runtime.Host", output);
    }

    private static Runtime.Host.Lua.LuaScript.Outcome Outcome(bool succeeded, long liveBlocksAfterClose, long liveBytesAfterClose) =>
        new(succeeded, succeeded ? null : "lua: boom", PeakBytes: 1000, liveBlocksAfterClose, liveBytesAfterClose, Refusals: 0, Sites: null);

    [Fact]
    public void Blocks_live_after_lua_close_are_a_leak_with_exit_code_4_and_a_line_that_counts_them()
    {
        // lua_close frees every block of a healthy state, so no script can make a leak; the verdict is checked here.
        var (exit, message) = HostProgram.Verdict(violations: 0, Outcome(succeeded: true, liveBlocksAfterClose: 3, liveBytesAfterClose: 96));
        Assert.Equal(HostProgram.ExitLeak, exit);
        Assert.Equal("Runtime.Host: leak: 3 blocks (96 bytes) of the Lua state still live after lua_close.", message);
        Assert.Equal(HostProgram.ExitLeak, HostProgram.Verdict(0, Outcome(succeeded: false, 1, 16)).Exit); // a leak outranks the script's error
    }

    [Fact]
    public void Violations_outrank_a_leak_and_a_clean_run_exits_by_the_script_s_outcome()
    {
        Assert.Equal(
            (HostProgram.ExitWorkloadFailed, "Runtime.Host: the debug hooks found 2 memory violations (reported above)."),
            HostProgram.Verdict(violations: 2, Outcome(succeeded: true, 3, 96)));
        Assert.Equal((HostProgram.ExitOk, (string?)null), HostProgram.Verdict(0, Outcome(succeeded: true, 0, 0)));
        Assert.Equal((HostProgram.ExitScriptError, (string?)null), HostProgram.Verdict(0, Outcome(succeeded: false, 0, 0)));
    }
}
