using System.Diagnostics;
using System.Globalization;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>--depth-loop</c>: what tracing costs a Lua script at recursion depth 10, 1,000 and 100,000 (issue 26, point 2),
/// untraced, exact and sampled, through the real host (<c>Runtime.Host</c>, built beside this program), each run in a
/// fresh process. The script recurses to the depth (no tail calls), builds small tables there for two seconds untimed
/// (tiered compilation rejits the traced path with its profile after about a second: timing before that measures the
/// JIT), then in a timed loop (<c>os.clock</c>,
/// best of its repetitions); the figure is ns per table, each table two allocations (the table and its array part)
/// and, once the collector has run, their frees.
/// </summary>
internal static class DepthLoop
{
    private static readonly int[] Depths = [10, 1000, 100_000];

    private static readonly (string Name, string[] Switches)[] Modes =
    [
        ("off", ["--RuntimeMemory:Tracing:Enabled=false"]),
        ("exact", ["--RuntimeMemory:Tracing:Enabled=true", "--RuntimeMemory:Tracing:SampleBytes=0"]),
        ("sampled", ["--RuntimeMemory:Tracing:Enabled=true", $"--RuntimeMemory:Tracing:SampleBytes={TracingSetup.SampleBytes}"]),
    ];

    internal const string Script = """
        local depth, tables, repetitions = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3])
        local function work()
          local t
          for i = 1, tables do t = { i } end
          return t
        end
        local function bottom()
          -- Warm-up, untimed: the runtime's methods on the traced path start as tier-0 code and are rejitted with the
          -- profile they gathered after a second or so; timing before that measures the JIT, not the tracing.
          local warm = os.clock()
          while os.clock() - warm < 2 do work() end
          local best = math.huge
          for _ = 1, repetitions do
            local start = os.clock()
            work()
            best = math.min(best, os.clock() - start)
          end
          return best
        end
        local function rec(d)
          if d == 0 then return bottom() end
          local best = rec(d - 1) -- not a tail call: the stack really is depth calls deep
          return best
        end
        print(string.format("%.2f", rec(depth) / tables * 1e9))
        """;

    private const int Tables = 200_000;
    private const int Repetitions = 7;
    private const int Rounds = 3;

    public static int RunAll()
    {
        string host = Path.Combine(AppContext.BaseDirectory, "Runtime.Host.dll");
        if (!File.Exists(host))
        {
            Console.Error.WriteLine($"{host} is not built beside the benchmarks");
            return 1;
        }

        string dir = Directory.CreateTempSubdirectory("runtimemem-depth-").FullName;
        try
        {
            string script = Path.Combine(dir, "depth.lua");
            File.WriteAllText(script, Script);
            var best = new Dictionary<(int, string), double>();
            for (int round = 0; round < Rounds; round++) // interleaved: a slow spell of the machine touches every row
            {
                foreach (int depth in Depths)
                {
                    foreach ((string mode, string[] switches) in Modes)
                    {
                        double ns = RunHost(host, dir, [.. switches, script, depth.ToString(CultureInfo.InvariantCulture), Tables.ToString(CultureInfo.InvariantCulture), Repetitions.ToString(CultureInfo.InvariantCulture)]);
                        best[(depth, mode)] = Math.Min(best.GetValueOrDefault((depth, mode), double.MaxValue), ns);
                        Console.Error.WriteLine($"round {round + 1}/{Rounds}: depth {depth}, {mode}: {ns:F2} ns per table");
                    }
                }
            }

            Console.WriteLine($"Lua tables built at recursion depth d, ns per table (two allocations), best of {Rounds} fresh host processes × {Repetitions} loops of {Tables:N0}; tracing keeps 1 frame:");
            Console.WriteLine();
            Console.WriteLine("| depth | off | exact | ÷ off | sampled | ÷ off |");
            Console.WriteLine("|---:|---:|---:|---:|---:|---:|");
            foreach (int depth in Depths)
            {
                double off = best[(depth, "off")], exact = best[(depth, "exact")], sampled = best[(depth, "sampled")];
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"| {depth:N0} | {off:F1} | {exact:F1} | {exact / off:F2} | {sampled:F1} | {sampled / off:F2} |"));
            }

            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static double RunHost(string host, string dir, string[] args)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = dir,
        };
        start.ArgumentList.Add(host);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process child = Process.Start(start)!;
        Task<string> error = child.StandardError.ReadToEndAsync();
        string output = child.StandardOutput.ReadToEnd().Trim();
        child.WaitForExit();
        if (child.ExitCode != 0 || !double.TryParse(output, NumberStyles.Float, CultureInfo.InvariantCulture, out double ns))
        {
            throw new InvalidOperationException($"Runtime.Host {string.Join(' ', args)}: exit {child.ExitCode}, output '{output}', error '{error.Result.Trim()}'");
        }

        return ns;
    }
}
