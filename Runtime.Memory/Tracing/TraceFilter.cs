using System.Globalization;
using System.Text.RegularExpressions;

namespace Runtime.Memory.Tracing;

/// <summary>
/// A filter on traces (tracemalloc's <c>Filter</c>): a file-name pattern (<c>*</c>, <c>?</c> and <c>[...]</c>, as
/// fnmatch), optionally a line, optionally a trace domain. An inclusive filter keeps the traces it matches, an
/// exclusive one drops them. Matching looks at the most recent frame, or at every frame with <see cref="AllFrames"/>.
/// </summary>
public sealed record TraceFilter(bool Inclusive, string FilePattern, int? Line = null, bool AllFrames = false, uint? Domain = null)
{
    private readonly Regex _pattern = Glob(FilePattern);

    private static Regex Glob(string pattern)
    {
        ArgumentNullException.ThrowIfNull(pattern);
        var regex = new System.Text.StringBuilder("^");
        for (int i = 0; i < pattern.Length; i++)
        {
            char c = pattern[i];
            switch (c)
            {
                case '*': regex.Append(".*"); break;
                case '?': regex.Append('.'); break;
                case '[':
                    // As fnmatch.translate: a '!' first negates, and a ']' first (after it) belongs to the set.
                    int j = i + 1;
                    j += j < pattern.Length && pattern[j] == '!' ? 1 : 0;
                    j += j < pattern.Length && pattern[j] == ']' ? 1 : 0;
                    int close = j < pattern.Length ? pattern.IndexOf(']', j) : -1;
                    if (close < 0)
                    {
                        regex.Append(@"\[");
                        break;
                    }

                    string set = pattern[(i + 1)..close];
                    bool negate = set.StartsWith('!');
                    string members = (negate ? set[1..] : set).Replace(@"\", @"\\").Replace("[", @"\[").Replace("]", @"\]").Replace("^", @"\^");
                    regex.Append(negate ? "[^" : "[").Append(members).Append(']');
                    i = close;
                    break;
                default: regex.Append(Regex.Escape(c.ToString())); break;
            }
        }

        return new Regex(regex.Append('$').ToString(), RegexOptions.CultureInvariant | RegexOptions.Singleline);
    }

    private bool MatchesFrame(Frame frame) => _pattern.IsMatch(frame.File) && (Line is not int line || frame.Line == line);

    /// <summary>Whether the filter lets <paramref name="trace"/> through (tracemalloc's <c>Filter._match</c>).</summary>
    public bool Match(in Trace trace)
    {
        bool result = AllFrames
            ? trace.Traceback.Frames.Any(MatchesFrame) == Inclusive
            : MatchesFrame(trace.Traceback.MostRecent) == Inclusive;
        if (Domain is uint domain)
        {
            return Inclusive ? result && trace.Domain == domain : result || trace.Domain != domain;
        }

        return result;
    }
}
