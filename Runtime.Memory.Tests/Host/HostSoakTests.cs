using System.Diagnostics;
using System.Globalization;
using Runtime.Host;

namespace Runtime.Memory.Tests.Host;

/// <summary>
/// A fact that runs only when <c>RUNTIMEMEM_SOAK_MINUTES</c> is set (to the minutes of the soak), so that long runs stay
/// out of CI's suite: <c>RUNTIMEMEM_SOAK_MINUTES=10 dotnet test RuntimeMem.sln -c Release --filter Category=Soak</c>.
/// </summary>
public sealed class SoakFactAttribute : FactAttribute
{
    public const string Variable = "RUNTIMEMEM_SOAK_MINUTES";

    public SoakFactAttribute()
    {
        if (Minutes is null)
        {
            Skip = $"opt-in soak: set {Variable} to a number of minutes to run it";
        }
    }

    /// <summary>The soak's length, or null when it is not asked for (or not a positive number of minutes).</summary>
    public static double? Minutes =>
        double.TryParse(Environment.GetEnvironmentVariable(Variable), NumberStyles.Float, CultureInfo.InvariantCulture, out double m) && m > 0 ? m : null;
}

/// <summary>
/// The soak: <c>Runtime.Host</c> as a process, running the bundled demo (tables, strings, closures, coroutines,
/// collections, zlib) in a loop for the asked minutes under the debug hooks and with tracing on, its resident memory
/// read from <c>/proc/&lt;pid&gt;/status</c> every second. Resident memory must stay flat (the demo frees everything it
/// makes at each <c>lua_close</c>, so growth is a leak in the runtime: arenas, shadow chunks, traces), and the run must
/// end clean (no violation, nothing live after <c>lua_close</c>).
/// </summary>
[Trait("Category", "Soak")]
public sealed class HostSoakTests
{
    [SoakFact]
    public void The_host_runs_the_demo_for_minutes_under_debug_hooks_and_tracing_with_flat_resident_memory()
    {
        double minutes = SoakFactAttribute.Minutes!.Value;
        int seconds = (int)Math.Ceiling(minutes * 60);
        string dll = Path.Combine(AppContext.BaseDirectory, "Runtime.Host.dll");
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (string arg in new[]
        {
            dll, "--RuntimeMemory:Allocator=pymalloc_debug", "--RuntimeMemory:Tracing:Enabled=true",
            "--RuntimeMemory:Tracing:Frames=4", $"--Host:RunSeconds={seconds}", "--Host:Report=true",
        })
        {
            start.ArgumentList.Add(arg);
        }

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        var samples = new List<long>();
        var clock = Stopwatch.StartNew();
        while (!process.WaitForExit(1000))
        {
            if (ResidentKiB(process.Id) is { } kib)
            {
                samples.Add(kib);
            }

            if (clock.Elapsed.TotalSeconds > seconds + 120)
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"the host did not finish within {seconds + 120} s");
            }
        }

        Assert.True(process.ExitCode == HostProgram.ExitOk, $"exit {process.ExitCode}: {stderr.Result}");
        Assert.Contains("debug hooks: 0 violations found", stdout.Result);
        Assert.Contains("after lua_close 0 blocks, 0 bytes live", stdout.Result);

        // Flat: after a warm-up (the first fifth: JIT, arenas and shadow chunks reaching their working size), the
        // highest reading of the last third is within 5 % (plus 4 MiB for the GC's own breathing) of the highest
        // reading of the first third.
        Assert.True(samples.Count >= 30, $"only {samples.Count} readings of resident memory");
        long[] steady = [.. samples.Skip(samples.Count / 5)];
        long early = steady.Take(steady.Length / 3).Max();
        long late = steady.Skip(steady.Length * 2 / 3).Max();
        string readings = string.Join(", ", samples.Where((_, i) => i % Math.Max(1, samples.Count / 20) == 0).Select(k => $"{k / 1024} MiB"));
        Assert.True(late <= (early * 105 / 100) + 4096, $"resident memory grew from {early / 1024} MiB to {late / 1024} MiB ({readings})");
    }

    /// <summary>VmRSS of a process in KiB, or null once it has gone.</summary>
    private static long? ResidentKiB(int pid)
    {
        try
        {
            foreach (string line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                {
                    return long.Parse(line.AsSpan(6).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
        }

        return null;
    }
}
