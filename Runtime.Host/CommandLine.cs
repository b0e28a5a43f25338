namespace Runtime.Host;

/// <summary>
/// The host's command line split the way the standalone <c>lua</c> reads its own: configuration switches first, then
/// the script, then the script's arguments.
/// </summary>
/// <remarks>
/// A switch is an argument that starts with <c>--</c>: <c>--Key=Value</c>, or <c>--Key Value</c> (the next argument is
/// the value), as the .NET command-line configuration provider reads them. A lone <c>--</c> ends the switches. The
/// first other argument is the script, even when it starts with <c>/</c> (which the provider would take for a switch)
/// or holds spaces; the rest are the script's, untouched, even when they look like switches.
/// </remarks>
internal sealed record CommandLine(IReadOnlyList<string> Switches, string? Script, IReadOnlyList<string> ScriptArguments, bool Help)
{
    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        var switches = new List<string>();
        int i = 0;
        bool help = false;
        while (i < args.Count)
        {
            string a = args[i];
            if (a == "--")
            {
                i++;
                break;
            }

            if (a is "--help" or "-h" or "-?")
            {
                help = true;
                i++;
                continue;
            }

            if (!a.StartsWith("--", StringComparison.Ordinal))
            {
                break;
            }

            switches.Add(a);
            i++;
            if (!a.Contains('=', StringComparison.Ordinal) && i < args.Count)
            {
                switches.Add(args[i++]); // --Key Value
            }
        }

        string? script = i < args.Count ? args[i++] : null;
        return new CommandLine(switches, script, [.. args.Skip(i)], help);
    }
}
