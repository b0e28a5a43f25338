using System.Diagnostics;

namespace Runtime.Memory.Tests.Infrastructure;

/// <summary>Runs a program built beside the tests (a referenced executable project) as a child process.</summary>
internal static class ChildProcess
{
    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    /// <summary>Runs <c>dotnet &lt;program&gt;.dll args</c> and waits for it (at most a minute).</summary>
    public static Result Run(string program, params string[] args) => Run(program, new Dictionary<string, string>(), args);

    /// <summary>Runs <c>dotnet &lt;program&gt;.dll args</c> with <paramref name="environment"/> added, and waits for it.</summary>
    public static Result Run(string program, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        RunIn(null, program, environment, args);

    /// <summary>As <see cref="Run(string, IReadOnlyDictionary{string, string}, string[])"/>, in <paramref name="workingDirectory"/> (null: this process's).</summary>
    public static Result RunIn(string? workingDirectory, string program, IReadOnlyDictionary<string, string> environment, params string[] args) =>
        RunIn(workingDirectory, program, environment, TimeSpan.FromMinutes(1), args);

    /// <summary>As <see cref="RunIn(string?, string, IReadOnlyDictionary{string, string}, string[])"/>, failing (and
    /// killing the program) when it has not finished within <paramref name="timeout"/>.</summary>
    public static Result RunIn(string? workingDirectory, string program, IReadOnlyDictionary<string, string> environment, TimeSpan timeout, params string[] args)
    {
        string dll = Path.Combine(AppContext.BaseDirectory, program + ".dll");
        Assert.True(File.Exists(dll), $"{dll} is not built beside the tests");
        return Dotnet(workingDirectory, environment, timeout, [dll, .. args]);
    }

    /// <summary>Runs <c>dotnet args</c> (the SDK running the tests) in <paramref name="workingDirectory"/> and waits for
    /// it, failing (and killing it) when it has not finished within <paramref name="timeout"/>.</summary>
    public static Result Dotnet(string? workingDirectory, IReadOnlyDictionary<string, string> environment, TimeSpan timeout, params string[] args)
    {
        var start = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
        };
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        start.Environment["DOTNET_DbgEnableMiniDump"] = "0"; // a crash is the expected outcome of some runs: no dump
        foreach ((string name, string value) in environment)
        {
            start.Environment[name] = value;
        }

        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet {string.Join(' ', args)} did not finish within {timeout.TotalSeconds:0} s");
        }

        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }
}
