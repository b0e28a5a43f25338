using System.Globalization;
using System.Text.RegularExpressions;

namespace Runtime.Memory.Tracing;

/// <summary>tracemalloc's size formatting (<c>_format_size</c>): B, KiB, MiB, GiB, TiB.</summary>
public static class TraceFormat
{
    private static readonly string[] Units = ["B", "KiB", "MiB", "GiB", "TiB"];

    /// <summary><paramref name="size"/> as tracemalloc prints it: <c>126 B</c>, <c>12.5 KiB</c>, <c>4855 KiB</c>; <c>+</c> or <c>-</c> first with <paramref name="sign"/>.</summary>
    public static string Size(double size, bool sign = false)
    {
        foreach (string unit in Units)
        {
            if (Math.Abs(size) < 100 && unit != "B")
            {
                return Fixed(size, 1, sign) + " " + unit;
            }

            if (Math.Abs(size) < 10 * 1024 || unit == "TiB")
            {
                return Fixed(size, 0, sign) + " " + unit;
            }

            size /= 1024;
        }

        throw new InvalidOperationException("unreachable: TiB ends the loop");
    }

    private static string Fixed(double value, int digits, bool sign)
    {
        double rounded = Math.Round(value, digits, MidpointRounding.ToEven); // printf's rounding of exact halves
        string text = rounded.ToString("F" + digits.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        return sign && rounded >= 0 && !text.StartsWith('-') ? "+" + text : text;
    }
}
