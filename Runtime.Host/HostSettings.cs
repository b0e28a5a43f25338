using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Runtime.Host;

/// <summary>
/// The host's own settings (section <c>Host</c>), read once at start; a bad value stops the host with a line naming the
/// key, the value and what is allowed.
/// </summary>
internal sealed record HostSettings(bool? Report, int TopSites, bool AllocatorStatistics, int RunSeconds, string? FlameGraph = null, string? Profile = null)
{
    /// <summary>The end-of-run report: true, false, or unset (on for the bundled demo, off for a script of yours).</summary>
    public const string ReportKey = "Host:Report";

    /// <summary>How many allocation sites the report lists when tracing (1 to 1,000; default 10).</summary>
    public const string TopSitesKey = "Host:TopSites";

    /// <summary>Adds the small-object allocator statistics to the report.</summary>
    public const string AllocatorStatisticsKey = "Host:AllocatorStatistics";

    /// <summary>Repeats the script until this many seconds have passed (default 0: once), so that
    /// <c>dotnet-counters monitor -n Runtime.Host --counters Runtime.Memory</c> has a running process to watch.</summary>
    public const string RunSecondsKey = "Host:RunSeconds";

    /// <summary>Writes an SVG flame graph of the live bytes by Lua traceback to this file at the end of the run (the
    /// snapshot of the report's top sites, taken before <c>lua_close</c>); needs tracing.</summary>
    public const string FlameGraphKey = "Host:FlameGraph";

    /// <summary>Writes the same snapshot as a gzip-compressed pprof heap profile to this file; needs tracing.</summary>
    public const string ProfileKey = "Host:Profile";

    /// <summary>The most <see cref="RunSecondsKey"/> accepts: a day.</summary>
    public const int MaxRunSeconds = 86_400;

    private static readonly string[] Known = ["Report", "TopSites", "AllocatorStatistics", "RunSeconds", "FlameGraph", "Profile"];

    public static HostSettings Read(IConfiguration configuration)
    {
        foreach (IConfigurationSection child in configuration.GetSection("Host").GetChildren())
        {
            if (!Known.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                throw Bad($"Host:{child.Key}", child.Value, $"not a setting of the host. Allowed keys: {string.Join(", ", Known.Select(k => "Host:" + k))}.");
            }
        }

        return new HostSettings(
            ReadBool(configuration, ReportKey),
            ReadInt(configuration, TopSitesKey, 10, 1, 1000, "a number of allocation sites"),
            ReadBool(configuration, AllocatorStatisticsKey) ?? false,
            ReadInt(configuration, RunSecondsKey, 0, 0, MaxRunSeconds, "a number of seconds (0: run the script once)"),
            ReadOutputPath(configuration, FlameGraphKey),
            ReadOutputPath(configuration, ProfileKey));
    }

    /// <summary>
    /// The output files need the tracer's snapshot: a configuration error naming the key when one is asked for and
    /// tracing is off (<paramref name="tracing"/>, as the runtime was configured).
    /// </summary>
    public void RequireTracingForOutputs(bool tracing)
    {
        foreach ((string key, string? path) in new[] { (FlameGraphKey, FlameGraph), (ProfileKey, Profile) })
        {
            if (path is not null && !tracing)
            {
                throw Bad(key, path, "needs allocation tracing, which is off. Add --RuntimeMemory:Tracing:Enabled=true.");
            }
        }
    }

    /// <summary>A file to write at the end of the run: its directory must exist now, so that a typo stops the host before the work.</summary>
    private static string? ReadOutputPath(IConfiguration configuration, string key)
    {
        string? value = configuration[key];
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }

        string full = Path.GetFullPath(value);
        if (Directory.Exists(full))
        {
            throw Bad(key, value, "a directory, not a file. Allowed values: the path of a file to write.");
        }

        string? directory = Path.GetDirectoryName(full);
        return directory is null || Directory.Exists(directory)
            ? value
            : throw Bad(key, value, $"the directory {directory} does not exist. Allowed values: the path of a file to write.");
    }

    private static int ReadInt(IConfiguration configuration, string key, int fallback, int min, int max, string what)
    {
        string? value = configuration[key];
        if (string.IsNullOrWhiteSpace(value))
        {
            return fallback;
        }

        return int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) && n >= min && n <= max
            ? n
            : throw Bad(key, value, $"not {what}. Allowed values: an integer from {min} to {max}.");
    }

    private static bool? ReadBool(IConfiguration configuration, string key)
    {
        string? value = configuration[key];
        if (string.IsNullOrWhiteSpace(value))
        {
            return null;
        }

        return bool.TryParse(value, out bool result) ? result : throw Bad(key, value, "not a boolean. Allowed values: true, false.");
    }

    private static OptionsValidationException Bad(string key, string? value, string why) =>
        new(key, typeof(HostSettings), [$"{key} = '{value}': {why}"]);
}
