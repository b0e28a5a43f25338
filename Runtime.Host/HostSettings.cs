using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Runtime.Host;

/// <summary>
/// The host's own settings (section <c>Host</c>), read once at start; a bad value stops the host with a line naming the
/// key, the value and what is allowed.
/// </summary>
internal sealed record HostSettings(bool? Report, int TopSites, bool AllocatorStatistics, int RunSeconds)
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

    /// <summary>The most <see cref="RunSecondsKey"/> accepts: a day.</summary>
    public const int MaxRunSeconds = 86_400;

    private static readonly string[] Known = ["Report", "TopSites", "AllocatorStatistics", "RunSeconds"];

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
            ReadInt(configuration, RunSecondsKey, 0, 0, MaxRunSeconds, "a number of seconds (0: run the script once)"));
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
