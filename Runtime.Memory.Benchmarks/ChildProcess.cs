using System.Diagnostics;
using System.Reflection;

namespace Runtime.Memory.Benchmarks;

/// <summary>Runs this benchmark program again in a fresh process (the measurements that must not share a process).</summary>
internal static class ChildProcess
{
    /// <summary>Runs this program with <paramref name="args"/>; its exit code, its standard output trimmed, its standard error trimmed.</summary>
    public static (int ExitCode, string Output, string Error) Run(params string[] args)
    {
        // The apphost directly, or `dotnet <entry assembly>` when started by the muxer.
        string host = Environment.ProcessPath!;
        var start = new ProcessStartInfo(host) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Path.GetFileNameWithoutExtension(host) == "dotnet")
        {
            start.ArgumentList.Add((Assembly.GetEntryAssembly() ?? typeof(ChildProcess).Assembly).Location);
        }

        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using Process child = Process.Start(start)!;
        Task<string> error = child.StandardError.ReadToEndAsync(); // drain both pipes at once: no deadlock on a full pipe
        string output = child.StandardOutput.ReadToEnd().Trim();
        child.WaitForExit();
        return (child.ExitCode, output, error.Result.Trim());
    }
}
