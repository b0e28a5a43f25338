using System.Globalization;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Runtime.Memory;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Hosting;

namespace Runtime.Host;

/// <summary>
/// The reference embedding host: builds the memory service on the .NET generic host from <c>appsettings.json</c>,
/// environment variables and command-line switches (in that order of precedence, lowest first), runs the
/// built-in workload and prints the per-domain report.
/// </summary>
public static class HostProgram
{
    /// <summary>Success.</summary>
    public const int ExitOk = 0;

    /// <summary>The configuration is invalid; one line per problem went to stderr.</summary>
    public const int ExitConfigurationError = 2;

    /// <summary>The workload saw corrupt contents or a result that broke the allocator contract, or the debug hooks found a violation.</summary>
    public const int ExitWorkloadFailed = 3;

    /// <summary>Blocks were still live at the end.</summary>
    public const int ExitLeak = 4;

    /// <summary>
    /// Runs the host. <paramref name="contentRoot"/> is where <c>appsettings.json</c> is read from (default: the
    /// directory of the program, so that <c>dotnet run</c> from any directory finds the bundled defaults).
    /// </summary>
    public static async Task<int> RunAsync(string[] args, TextWriter stdout, TextWriter stderr, string? contentRoot = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        if (args.Any(a => a is "--help" or "-h" or "-?"))
        {
            await stdout.WriteAsync(Usage);
            return ExitOk;
        }

        IHost? host = null;
        IRuntimeMemory runtime;
        bool showAllocatorStatistics;
        int runSeconds;
        try
        {
            HostApplicationBuilder builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
            {
                Args = args,
                ContentRootPath = contentRoot ?? AppContext.BaseDirectory,
            });
            builder.Services.AddRuntimeMemory(RuntimeMemoryOptions.DefaultSectionName);
            showAllocatorStatistics = ReadBool(builder.Configuration, AllocatorStatisticsKey);
            runSeconds = ReadSeconds(builder.Configuration, RunSecondsKey);
            host = builder.Build();

            // Validate now rather than relying on StartAsync, so a bad setting stops us before any work.
            runtime = host.Services.ValidateRuntimeMemory();
        }
        catch (Exception ex) when (DescribeConfigurationError(ex) is { } lines)
        {
            host?.Dispose();
            foreach (string line in lines)
            {
                await stderr.WriteLineAsync($"Runtime.Host: configuration error: {line}");
            }

            return ExitConfigurationError;
        }

        using (host)
        {
            await host.StartAsync();
            BuiltInWorkload.Result result = BuiltInWorkload.Run(runtime);
            var clock = System.Diagnostics.Stopwatch.StartNew();
            while (clock.Elapsed.TotalSeconds < runSeconds && result.CorruptBlocks == 0 && result.Anomalies == 0)
            {
                BuiltInWorkload.Result again = BuiltInWorkload.Run(runtime); // Host:RunSeconds: long enough to watch with dotnet-counters
                result = new BuiltInWorkload.Result(result.Operations + again.Operations, result.CorruptBlocks + again.CorruptBlocks, result.Anomalies + again.Anomalies);
            }

            RuntimeMemoryStatistics statistics = runtime.GetStatistics();
            await stdout.WriteAsync(FormatReport(runtime, result, statistics));
            if (showAllocatorStatistics)
            {
                await stdout.WriteAsync(FormatAllocatorStatistics(statistics)); // the same snapshot as the report
            }

            await host.StopAsync();

            if (runtime.Debugger.Violations != 0)
            {
                await stderr.WriteLineAsync(
                    $"Runtime.Host: workload failed: the debug hooks found {runtime.Debugger.Violations} memory violations (reported above).");
                return ExitWorkloadFailed;
            }

            if (result.CorruptBlocks != 0 || result.Anomalies != 0)
            {
                await stderr.WriteLineAsync(
                    $"Runtime.Host: workload failed: {result.CorruptBlocks} corrupt blocks, {result.Anomalies} results that broke the allocator contract.");
                return ExitWorkloadFailed;
            }

            if (statistics.LiveBlocks != 0)
            {
                await stderr.WriteLineAsync($"Runtime.Host: leak: {statistics.LiveBlocks} blocks ({statistics.LiveBytes} bytes) still live after the workload.");
                return ExitLeak;
            }

            return ExitOk;
        }
    }

    /// <summary>The report printed after the workload; deterministic for a given configuration.</summary>
    internal static string FormatReport(IRuntimeMemory runtime, BuiltInWorkload.Result result, RuntimeMemoryStatistics statistics)
    {
        var text = new System.Text.StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"RuntimeMem host: allocator '{runtime.AllocatorName}'\n");
        text.Append(CultureInfo.InvariantCulture,
            $"workload: {result.Operations:N0} operations over raw, mem and obj; {result.CorruptBlocks} corrupt blocks, {result.Anomalies} contract violations\n");
        if (runtime.Raw.DebugHook is not null || runtime.Mem.DebugHook is not null || runtime.Obj.DebugHook is not null)
        {
            MemoryDebugger debugger = runtime.Debugger;
            text.Append(CultureInfo.InvariantCulture,
                $"debug hooks: {debugger.Violations} violations found (OnViolation={debugger.OnViolation}{(debugger.GuardPages ? ", guard pages" : "")})\n");
        }

        text.Append('\n');
        text.Append(StatisticsReport.Format(statistics));
        return text.ToString();
    }

    /// <summary>Configuration key that adds the small-object allocator statistics to the report.</summary>
    public const string AllocatorStatisticsKey = "Host:AllocatorStatistics";

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

    /// <summary>
    /// Configuration key that repeats the workload until this many seconds have passed (default 0: once), so that
    /// <c>dotnet-counters monitor -n Runtime.Host --counters Runtime.Memory</c> has a running process to watch.
    /// </summary>
    public const string RunSecondsKey = "Host:RunSeconds";

    /// <summary>The most <see cref="RunSecondsKey"/> accepts: a day.</summary>
    public const int MaxRunSeconds = 86_400;

    private static int ReadSeconds(Microsoft.Extensions.Configuration.IConfiguration configuration, string key)
    {
        string? value = configuration[key];
        if (string.IsNullOrWhiteSpace(value))
        {
            return 0;
        }

        return int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int seconds) && seconds is >= 0 and <= MaxRunSeconds
            ? seconds
            : throw new OptionsValidationException(key, typeof(int),
                [$"{key} = '{value}': not a number of seconds. Allowed values: an integer from 0 (run the workload once) to {MaxRunSeconds}."]);
    }

    private static bool ReadBool(Microsoft.Extensions.Configuration.IConfiguration configuration, string key)
    {
        string? value = configuration[key];
        if (string.IsNullOrWhiteSpace(value))
        {
            return false;
        }

        return bool.TryParse(value, out bool result)
            ? result
            : throw new OptionsValidationException(key, typeof(bool), [$"{key} = '{value}': not a boolean. Allowed values: true, false."]);
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
        Usage: Runtime.Host [--RuntimeMemory:Allocator=<name>] [--RuntimeMemory:Debug:OnViolation=FailFast|Throw|Log]
                            [--RuntimeMemory:Debug:GuardPages=true] [--Host:AllocatorStatistics=true]
                            [--Host:RunSeconds=<0-86400>]

        Allocator names: default, debug, malloc, malloc_debug, pymalloc, pymalloc_debug (the *_debug names and
        debug add the debug hooks: guard bytes checked on every free and realloc).

        Runs the built-in workload through the raw, mem and obj domains and prints the per-domain report;
        with Host:AllocatorStatistics, also the small-object allocator statistics (as sys._debugmallocstats());
        with Host:RunSeconds=N, repeats the workload for N seconds (watch it with
        dotnet-counters monitor -n Runtime.Host --counters Runtime.Memory).
        Settings come from appsettings.json, then environment variables (RuntimeMemory__Allocator=malloc),
        then command-line switches (--RuntimeMemory:Allocator=malloc); later sources win.

        Exit codes: 0 success, 2 configuration error, 3 workload failed (or a memory violation), 4 blocks left live.

        """;
}
