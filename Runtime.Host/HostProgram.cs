using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Runtime.Memory;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Hosting;
using Runtime.Memory.Debugging;

namespace Runtime.Host;

/// <summary>
/// The reference embedding host: builds the memory service on the .NET generic host from <c>appsettings.json</c>,
/// environment variables and command-line switches (in that order of precedence, lowest first), runs a Lua 5.4 script
/// (the bundled demo when none is given) on a state whose every byte is in the obj domain, and prints the report.
/// </summary>
/// <remarks>
/// The command line is the standalone <c>lua</c>'s with configuration switches in front:
/// <c>Runtime.Host [--Key=Value | --Key Value]... [script.lua [args...]]</c>. The first argument that is not a switch
/// is the script, whatever it looks like (an absolute path starting with <c>/</c>, a path with spaces), and everything
/// after it goes to the script's <c>arg</c> table; only the switches reach the configuration.
/// </remarks>
public static class HostProgram
{
    /// <summary>Success.</summary>
    public const int ExitOk = 0;

    /// <summary>The script raised a Lua error (a syntax error, a runtime error, an uncaught "not enough memory"), or
    /// could not be read; the message went to stderr as <c>lua</c> prints it. Also when a file asked for with
    /// <c>--Host:FlameGraph</c> or <c>--Host:Profile</c> could not be written (a line on stderr says why).</summary>
    public const int ExitScriptError = 1;

    /// <summary>The configuration is invalid; one line per problem went to stderr.</summary>
    public const int ExitConfigurationError = 2;

    /// <summary>The debug hooks found a memory violation.</summary>
    public const int ExitWorkloadFailed = 3;

    /// <summary>Blocks of the Lua state were still live after <c>lua_close</c> (a leak), or blocks of the service at the end.</summary>
    public const int ExitLeak = 4;

    /// <summary>
    /// Runs the host. <paramref name="contentRoot"/> is where <c>appsettings.json</c> is read from (default: the
    /// directory of the program, so that <c>dotnet run</c> from any directory finds the bundled defaults).
    /// </summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, string? contentRoot = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        CommandLine line = CommandLine.Parse(args);
        if (line.Help)
        {
            await stdout.WriteAsync(Usage);
            return ExitOk;
        }

        IHost? host = null;
        IRuntimeMemory runtime;
        HostSettings settings;
        try
        {
            HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
            {
                Args = [.. line.Switches],
                ContentRootPath = contentRoot ?? AppContext.BaseDirectory,
            });
            builder.Services.AddRuntimeMemory(RuntimeMemoryOptions.DefaultSectionName);
            settings = HostSettings.Read(builder.Configuration);
            host = builder.Build();

            // Validate now rather than relying on StartAsync, so a bad setting stops us before any work.
            runtime = host.Services.ValidateRuntimeMemory();
            settings.RequireTracingForOutputs(runtime.Tracer.IsTracing); // RuntimeMemory:Tracing:Enabled started it
        }
        catch (Exception ex) when (DescribeConfigurationError(ex) is { } lines)
        {
            host?.Dispose();
            foreach (string problem in lines)
            {
                await stderr.WriteLineAsync($"Runtime.Host: configuration error: {problem}");
            }

            return ExitConfigurationError;
        }

        using (host)
        {
            await host.StartAsync();
            string scriptPath = line.Script ?? Path.Combine(AppContext.BaseDirectory, "lua", "demo.lua");
            string scriptName = line.Script ?? "demo.lua";
            if (!File.Exists(scriptPath))
            {
                await stderr.WriteLineAsync($"lua: cannot open {scriptName}");
                return ExitScriptError;
            }

            runtime.Tracer.FrameProvider = new Lua.LuaFrameProvider(); // traces group by Lua file and line
            Lua.LuaScript.Outcome outcome;
            try
            {
                outcome = Lua.LuaScript.Run(runtime, scriptPath, scriptName, line.ScriptArguments);
                var clock = System.Diagnostics.Stopwatch.StartNew();
                while (outcome.Succeeded && clock.Elapsed.TotalSeconds < settings.RunSeconds)
                {
                    outcome = Lua.LuaScript.Run(runtime, scriptPath, scriptName, line.ScriptArguments); // long enough to watch with dotnet-counters
                }
            }
            catch (DllNotFoundException ex)
            {
                await stderr.WriteLineAsync($"Runtime.Host: {ex.Message}");
                return ExitScriptError;
            }

            await stdout.FlushAsync();
            if (outcome.Error is { } error)
            {
                await stderr.WriteLineAsync(error);
            }

            // Freed blocks still in the debug hooks' quarantine are checked now, so that a write after free counts in
            // the verdict below (at Dispose it would only be logged).
            try
            {
                runtime.Debugger.FlushQuarantine();
            }
            catch (MemoryViolationException ex)
            {
                await stderr.WriteAsync(ex.Violation.Report); // OnViolation=Throw: the report, and the verdict below
            }

            RuntimeMemoryStatistics statistics = runtime.GetStatistics();
            if (settings.Report ?? line.Script is null)
            {
                await stdout.WriteAsync(FormatReport(runtime, scriptName, outcome, statistics, settings.TopSites));
                if (settings.AllocatorStatistics)
                {
                    await stdout.WriteAsync(FormatAllocatorStatistics(statistics)); // the same snapshot as the report
                }
            }

            bool written = await WriteOutputs(settings, outcome, stderr);
            await host.StopAsync();

            (int exit, string? verdict) = Verdict(runtime.Debugger.Violations, outcome);
            if (verdict is not null)
            {
                await stderr.WriteLineAsync(verdict);
            }

            return exit == ExitOk && !written ? ExitScriptError : exit;
        }
    }

    /// <summary>
    /// Writes the flame graph (<c>--Host:FlameGraph</c>) and the pprof profile (<c>--Host:Profile</c>) of the snapshot
    /// the report's top sites come from (live blocks of the Lua state before <c>lua_close</c>). False, with a line on
    /// stderr, when one could not be written (no snapshot because the script stopped tracing, or an I/O error).
    /// </summary>
    private static async Task<bool> WriteOutputs(HostSettings settings, Lua.LuaScript.Outcome outcome, TextWriter stderr)
    {
        bool ok = true;
        foreach ((string key, string? path, Action<Memory.Tracing.TraceSnapshot, string> write) in new (string, string?, Action<Memory.Tracing.TraceSnapshot, string>)[]
            {
                (HostSettings.FlameGraphKey, settings.FlameGraph, static (s, p) => s.SaveFlameGraph(p, "Live bytes of the Lua state by traceback, before lua_close")),
                (HostSettings.ProfileKey, settings.Profile, static (s, p) => s.SaveProfile(p)),
            })
        {
            if (path is null)
            {
                continue;
            }

            if (outcome.Sites is not { } snapshot)
            {
                await stderr.WriteLineAsync($"Runtime.Host: {key}: nothing written to {path}: tracing was off when the script ended (memory.stop()?).");
                ok = false;
                continue;
            }

            try
            {
                write(snapshot, path);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                await stderr.WriteLineAsync($"Runtime.Host: {key}: cannot write {path}: {ex.Message}");
                ok = false;
            }
        }

        return ok;
    }

    /// <summary>
    /// The exit code of a finished run and the line that explains a failure beyond the script's own error: memory
    /// violations first (3), then blocks of the Lua state live after <c>lua_close</c> (4, a leak), then the script's
    /// outcome (0 or 1).
    /// </summary>
    internal static (int Exit, string? Message) Verdict(long violations, Lua.LuaScript.Outcome outcome)
    {
        if (violations != 0)
        {
            return (ExitWorkloadFailed, $"Runtime.Host: the debug hooks found {violations} memory violations (reported above).");
        }

        if (outcome.LiveBlocksAfterClose != 0)
        {
            return (ExitLeak, $"Runtime.Host: leak: {outcome.LiveBlocksAfterClose} blocks ({outcome.LiveBytesAfterClose} bytes) of the Lua state still live after lua_close.");
        }

        return (outcome.Succeeded ? ExitOk : ExitScriptError, null);
    }

    /// <summary>The end-of-run report; deterministic for a given configuration and script, but for the figures.</summary>
    internal static string FormatReport(IRuntimeMemory runtime, string scriptName, Lua.LuaScript.Outcome outcome, RuntimeMemoryStatistics statistics, int topSites)
    {
        var text = new System.Text.StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"RuntimeMem host: allocator '{runtime.AllocatorName}'\n");
        text.Append(CultureInfo.InvariantCulture, $"script: {scriptName}: {(outcome.Succeeded ? "ok" : "failed")}\n");
        text.Append(CultureInfo.InvariantCulture,
            $"lua state (obj domain, tag 'lua'): peak {N(outcome.PeakBytes)} bytes; {N(outcome.Refusals)} allocations refused; after lua_close {N(outcome.LiveBlocksAfterClose)} blocks, {N(outcome.LiveBytesAfterClose)} bytes live\n");
        if (outcome.Zlib is { } zlib && zlib.PeakBytes > 0)
        {
            text.Append(CultureInfo.InvariantCulture, $"zlib (raw domain, tag 'zlib'): peak {N(zlib.PeakBytes)} bytes; after the run {N(zlib.LiveBlocks)} blocks live\n");
        }

        if (runtime.Raw.DebugHook is not null || runtime.Mem.DebugHook is not null || runtime.Obj.DebugHook is not null)
        {
            MemoryDebugger debugger = runtime.Debugger;
            text.Append(CultureInfo.InvariantCulture,
                $"debug hooks: {debugger.Violations} violations found (OnViolation={debugger.OnViolation}{(debugger.GuardPages ? ", guard pages" : "")})\n");
        }

        text.Append('\n');
        text.Append(StatisticsReport.Format(statistics));
        if (outcome.Sites is { } sites)
        {
            text.Append(CultureInfo.InvariantCulture, $"\ntop {topSites} allocation sites by Lua line, live before lua_close (tracing, {sites.TracebackLimit} frames):\n");
            foreach (Memory.Tracing.TraceStatistic site in sites.Statistics(Memory.Tracing.TraceGrouping.Line).Take(topSites))
            {
                text.Append(site).Append('\n');
            }
        }

        return text.ToString();
    }

    private static string N(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    /// <summary>
    /// The small-object allocator statistics of each domain that runs on it, in the layout of CPython's
    /// <c>sys._debugmallocstats()</c>; a line saying so when none does.
    /// </summary>
    internal static string FormatAllocatorStatistics(RuntimeMemoryStatistics statistics)
    {
        var text = new System.Text.StringBuilder();
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            if (statistics[kind].SmallObjects is { } small)
            {
                text.Append(CultureInfo.InvariantCulture, $"\nsmall-object allocator of the {kind.ToName()} domain:\n");
                text.Append(SmallObjectReport.Format(small));
            }
        }

        return text.Length > 0 ? text.ToString() : "\nno domain runs on the small-object allocator (RuntimeMemory:Allocator is not default or pymalloc)\n";
    }

    /// <summary>The configuration problems in <paramref name="ex"/>, one line each; null when it is not a configuration error.</summary>
    private static IReadOnlyList<string>? DescribeConfigurationError(Exception ex) => ex switch
    {
        OptionsValidationException validation => [.. validation.Failures],
        AggregateException aggregate when aggregate.InnerExceptions.All(e => e is OptionsValidationException) =>
            [.. aggregate.InnerExceptions.Cast<OptionsValidationException>().SelectMany(e => e.Failures)],

        // A malformed appsettings.json: the provider names the file; the innermost exception (the JSON reader's) the position.
        InvalidDataException data => [string.Join(" ", MessageChain(data))],

        // Parse errors of the configuration providers (for example a switch the command-line provider cannot map).
        FormatException format => [format.Message],
        _ => null,
    };

    private static IEnumerable<string> MessageChain(Exception ex)
    {
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            yield return e.Message;
        }
    }

    private const string Usage = """
        Usage: Runtime.Host [switches] [script.lua [args...]]

        Runs script.lua (the bundled demo, lua/demo.lua, when none is given) on Lua 5.4, with every byte of the Lua
        state allocated in the obj domain of the memory service; arguments after the script go to its arg table.
        Switches come first, as --Key=Value or --Key Value, and are configuration keys:

          --RuntimeMemory:Allocator=<name>         default, debug, malloc, malloc_debug, pymalloc, pymalloc_debug
          --RuntimeMemory:Debug:OnViolation=FailFast|Throw|Log    --RuntimeMemory:Debug:GuardPages=true
          --RuntimeMemory:Tracing:Enabled=true     trace allocations; the report lists the top sites by Lua line
          --RuntimeMemory:Tracing:Frames=<1-65535> --RuntimeMemory:Limits:Obj:MaxBytes=<bytes>
          --Host:Report=true|false                 the end-of-run report (default: on for the demo, off for a script)
          --Host:TopSites=<1-1000>                 allocation sites in the report when tracing (default 10)
          --Host:AllocatorStatistics=true          small-object allocator statistics (as sys._debugmallocstats())
          --Host:RunSeconds=<0-86400>              repeat the script for that long (dotnet-counters monitor -n Runtime.Host --counters Runtime.Memory)
          --Host:FlameGraph=<file.svg>             an SVG flame graph of the live bytes by Lua traceback (needs tracing)
          --Host:Profile=<file.pb.gz>              the same snapshot as a pprof heap profile (go tool pprof, speedscope; needs tracing)

        Settings come from appsettings.json, then environment variables (RuntimeMemory__Allocator=malloc), then
        switches; later sources win. Scripts get the memory module: memory.used(), memory.start([frames]),
        memory.stop(), memory.traced(), memory.snapshot(), memory.top([n], [snapshot]), memory.compare(new, old, [n]),
        memory.dump_profile(path, [snapshot]).

        Exit codes: 0 success, 1 Lua error (or an output file not written), 2 configuration error, 3 memory violation, 4 blocks left live after lua_close.

        """;
}
