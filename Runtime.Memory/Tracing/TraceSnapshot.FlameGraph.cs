using System.Globalization;
using System.Net;
using System.Text;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The snapshot as a flame graph of live bytes by traceback (<see cref="WriteFlameGraph"/>, <see cref="SaveFlameGraph"/>):
/// one self-contained SVG file, no script, no external font or style.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Rows are frames: the root (<c>all</c>, every live traced byte) at the bottom, each traceback's oldest frame
/// above it and the allocating frame on top, callers below callees, as Brendan Gregg's flame graphs.</item>
/// <item>A bar's width is proportional to the bytes allocated under that frame (the tracer's estimates when it
/// samples). Siblings are ordered by label (ordinal), as <c>flamegraph.pl</c> orders them, so the same snapshot
/// gives the same file.</item>
/// <item>A bar's label is <c>file:line (function)</c> (<c>file:line</c> when the function is unknown), cut to fit
/// its width (<c>..</c>), left out when fewer than three characters fit; its tooltip (<c>&lt;title&gt;</c>) has the
/// whole label, the bytes with their share of the total, and the block count.</item>
/// <item>Colours are warm, derived from a hash (FNV-1a) of the label: the same frame has the same colour in every
/// graph. The root is grey.</item>
/// <item>The drawing is <see cref="FlameGraphWidth"/> pixels wide, <see cref="FlameGraphRowHeight"/> per row; bars
/// narrower than 0.1 pixel are left out (their bytes still count in their parents).</item>
/// </list>
/// </remarks>
public sealed partial class TraceSnapshot
{
    /// <summary>The width of a flame graph, in SVG user units (pixels at 96 dpi).</summary>
    public const int FlameGraphWidth = 1200;

    /// <summary>The height of one row of a flame graph (a bar is one less, for the gap).</summary>
    public const int FlameGraphRowHeight = 16;

    private const int FlamePad = 10;
    private const int FlameTop = 44;
    private const int FlameBottom = 8;
    private const double FlameCharWidth = 7.0; // 12px monospace

    /// <summary>Writes the snapshot as an SVG flame graph of live bytes by traceback (see the remarks of this part of
    /// <see cref="TraceSnapshot"/>), with <paramref name="title"/> at the top.</summary>
    public void WriteFlameGraph(TextWriter writer, string? title = null)
    {
        ArgumentNullException.ThrowIfNull(writer);
        writer.Write(FlameGraphSvg(title ?? "Live bytes by traceback"));
    }

    /// <summary>Writes the SVG flame graph (<see cref="WriteFlameGraph"/>) to the file <paramref name="path"/>, in UTF-8.</summary>
    public void SaveFlameGraph(string path, string? title = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        using var writer = new StreamWriter(path, append: false, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
        WriteFlameGraph(writer, title);
    }

    private sealed class FlameNode(string label)
    {
        public readonly string Label = label;
        public long Size;
        public long Count;
        public readonly Dictionary<Frame, FlameNode> Children = [];
    }

    private static string FlameLabel(Frame frame) =>
        frame.Function is { } function ? $"{frame.File}:{frame.Line} ({function})" : $"{frame.File}:{frame.Line}";

    private string FlameGraphSvg(string title)
    {
        var root = new FlameNode("all");
        int depth = 1;
        foreach (Trace trace in _traces)
        {
            FlameNode node = root;
            node.Size += trace.Size;
            node.Count += trace.Count;
            foreach (Frame frame in trace.Traceback.Frames) // oldest first: the root's children are the oldest frames
            {
                if (!node.Children.TryGetValue(frame, out FlameNode? child))
                {
                    node.Children[frame] = child = new FlameNode(FlameLabel(frame));
                }

                child.Size += trace.Size;
                child.Count += trace.Count;
                node = child;
            }

            depth = Math.Max(depth, trace.Traceback.Frames.Count + 1);
        }

        int height = FlameTop + (depth * FlameGraphRowHeight) + FlameBottom;
        double usable = FlameGraphWidth - (2 * FlamePad);
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture,
            $"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"{FlameGraphWidth}\" height=\"{height}\" viewBox=\"0 0 {FlameGraphWidth} {height}\" font-family=\"monospace\" font-size=\"12\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"0\" y=\"0\" width=\"{FlameGraphWidth}\" height=\"{height}\" fill=\"#f8f8f8\"/>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{FlameGraphWidth / 2}\" y=\"20\" text-anchor=\"middle\" font-size=\"16\">{Escape(title)}</text>\n");
        string subtitle = string.Create(CultureInfo.InvariantCulture, $"{(SampleBytes > 0 ? $"sampled every {SampleBytes:N0} bytes on average: estimated" : "exact")}, {TotalSize:N0} bytes in {TotalCount:N0} blocks; hover a bar for its figures");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{FlameGraphWidth / 2}\" y=\"36\" text-anchor=\"middle\" fill=\"#555555\">{Escape(subtitle)}</text>\n");

        long total = root.Size;
        void Draw(FlameNode node, int level, double x, double width)
        {
            double y = height - FlameBottom - ((level + 1) * FlameGraphRowHeight);
            (int r, int g, int b) = level == 0 ? (200, 200, 200) : FlameColor(node.Label);
            double share = total > 0 ? 100.0 * node.Size / total : 0;
            svg.Append("<g>");
            svg.Append(CultureInfo.InvariantCulture, $"<title>{Escape(node.Label)}: {node.Size:N0} bytes ({share:F2}%), {node.Count:N0} blocks</title>");
            svg.Append(CultureInfo.InvariantCulture,
                $"<rect x=\"{F(x)}\" y=\"{F(y)}\" width=\"{F(width)}\" height=\"{FlameGraphRowHeight - 1}\" fill=\"rgb({r},{g},{b})\"/>");
            string label = level == 0 ? string.Create(CultureInfo.InvariantCulture, $"all ({node.Size:N0} bytes, {node.Count:N0} blocks)") : node.Label;
            int fit = (int)((width - 6) / FlameCharWidth);
            if (fit >= 3)
            {
                string shown = label.Length <= fit ? label : label[..(fit - 2)] + "..";
                svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{F(x + 3)}\" y=\"{F(y + 11.5)}\">{Escape(shown)}</text>");
            }

            svg.Append("</g>\n");
            if (total <= 0)
            {
                return;
            }

            double childX = x;
            foreach (FlameNode child in node.Children.Values.OrderBy(c => c.Label, StringComparer.Ordinal))
            {
                double childWidth = usable * child.Size / total;
                if (childWidth >= 0.1)
                {
                    Draw(child, level + 1, childX, childWidth);
                }

                childX += childWidth;
            }
        }

        Draw(root, 0, FlamePad, usable);
        svg.Append("</svg>\n");
        return svg.ToString();
    }

    /// <summary>A warm colour from the FNV-1a hash of <paramref name="label"/> (flamegraph.pl's "hot" palette ranges).</summary>
    internal static (int R, int G, int B) FlameColor(string label)
    {
        uint hash = 2166136261;
        foreach (byte b in Encoding.UTF8.GetBytes(label))
        {
            hash = (hash ^ b) * 16777619;
        }

        return (205 + (int)(hash % 51), (int)((hash >> 8) % 231), (int)((hash >> 16) % 56));
    }

    private static string F(double value) => value.ToString("0.##", CultureInfo.InvariantCulture);

    /// <summary>Text for XML: markup characters escaped, and control characters (which XML 1.0 does not allow, and a
    /// file name may hold) shown as U+FFFD.</summary>
    private static string Escape(string text) =>
        WebUtility.HtmlEncode(string.Create(text.Length, text, static (span, t) =>
        {
            for (int i = 0; i < t.Length; i++)
            {
                span[i] = char.IsControl(t[i]) ? '\uFFFD' : t[i];
            }
        }));
}
