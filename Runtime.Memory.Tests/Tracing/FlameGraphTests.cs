using Process = System.Diagnostics.Process;
using ProcessStartInfo = System.Diagnostics.ProcessStartInfo;
using System.Globalization;
using System.Xml.Linq;
using Runtime.Memory.Tests.Infrastructure;
using Runtime.Memory.Tracing;
using Trace = Runtime.Memory.Tracing.Trace;
using static Runtime.Memory.Tests.Tracing.MemoryTracerTests;

namespace Runtime.Memory.Tests.Tracing;

/// <summary>
/// <see cref="TraceSnapshot.WriteFlameGraph"/>: a known heap (75% of the bytes under <c>a.lua:10 (fa)</c>, 25% under
/// <c>b.lua:20 (fb)</c>, both called from <c>main.lua:1 (&lt;main&gt;)</c>) drawn as SVG, its bars and labels checked
/// in the SVG and, rendered by <c>rsvg-convert</c> (Debian librsvg2-bin) to PNG, in the pixels.
/// </summary>
public sealed unsafe class FlameGraphTests
{
    private static readonly XNamespace Svg = "http://www.w3.org/2000/svg";

    /// <summary>A bar of the graph: its rectangle, colour, label text (null when none fits) and tooltip.</summary>
    private sealed record Bar(double X, double Y, double Width, double Height, (int R, int G, int B) Fill, string? Text, double TextX, double TextY, string Title);

    private static TraceSnapshot KnownHeap(RuntimeMemory runtime, List<nint> held)
    {
        void Make(int count, nuint size)
        {
            for (int i = 0; i < count; i++)
            {
                held.Add((nint)runtime.Raw.Malloc(size));
            }
        }

        using (At("main.lua", 1, "<main>"))
        {
            using (At("a.lua", 10, "fa"))
            {
                Make(30, 1000); // 30,000 bytes: 75%
            }

            using (At("b.lua", 20, "fb"))
            {
                Make(10, 1000); // 10,000 bytes: 25%
            }
        }

        return runtime.Tracer.TakeSnapshot();
    }

    private static string Draw(out TraceSnapshot snapshot)
    {
        using RuntimeMemory runtime = Traced(AllocatorNames.Malloc, frames: 4);
        var held = new List<nint>();
        snapshot = KnownHeap(runtime, held);
        var writer = new StringWriter();
        snapshot.WriteFlameGraph(writer, "known heap");
        foreach (nint block in held)
        {
            runtime.Raw.Free((void*)block);
        }

        return writer.ToString();
    }

    private static Dictionary<string, Bar> Bars(string svg)
    {
        var bars = new Dictionary<string, Bar>();
        foreach (XElement g in XDocument.Parse(svg).Root!.Elements(Svg + "g"))
        {
            XElement rect = g.Element(Svg + "rect")!;
            XElement? text = g.Element(Svg + "text");
            string title = g.Element(Svg + "title")!.Value;
            string fill = rect.Attribute("fill")!.Value;
            int[] rgb = fill["rgb(".Length..^1].Split(',').Select(v => int.Parse(v, CultureInfo.InvariantCulture)).ToArray();
            double A(XElement e, string name) => double.Parse(e.Attribute(name)!.Value, CultureInfo.InvariantCulture);
            bars[title[..title.LastIndexOf(": ", StringComparison.Ordinal)]] = new Bar(
                A(rect, "x"), A(rect, "y"), A(rect, "width"), A(rect, "height"), (rgb[0], rgb[1], rgb[2]),
                text?.Value, text is null ? 0 : A(text, "x"), text is null ? 0 : A(text, "y"), title);
        }

        return bars;
    }

    [Fact]
    public void The_svg_has_a_bar_per_frame_root_at_the_bottom_widths_by_bytes_and_labels_inside_their_bars()
    {
        string svg = Draw(out TraceSnapshot snapshot);
        Dictionary<string, Bar> bars = Bars(svg);
        Assert.Equal(["a.lua:10 (fa)", "all", "b.lua:20 (fb)", "main.lua:1 (<main>)"], bars.Keys.Order(StringComparer.Ordinal));
        Bar all = bars["all"], main = bars["main.lua:1 (<main>)"], a = bars["a.lua:10 (fa)"], b = bars["b.lua:20 (fb)"];

        // Rows: the root at the bottom, callers below callees.
        Assert.True(all.Y > main.Y && main.Y > a.Y && a.Y == b.Y, $"rows: all {all.Y}, main {main.Y}, a {a.Y}, b {b.Y}");
        Assert.Equal(TraceSnapshot.FlameGraphRowHeight, all.Y - main.Y);

        // Widths in proportion to bytes: 75% and 25% of the root, side by side, A first (ordered by label).
        Assert.Equal(all.Width, main.Width, 2);
        Assert.Equal(0.75 * all.Width, a.Width, 1);
        Assert.Equal(0.25 * all.Width, b.Width, 1);
        Assert.Equal(all.X, a.X, 1);
        Assert.Equal(a.X + a.Width, b.X, 1);

        // Tooltips: bytes, share and blocks.
        Assert.Equal("a.lua:10 (fa): 30,000 bytes (75.00%), 30 blocks", a.Title);
        Assert.Equal("b.lua:20 (fb): 10,000 bytes (25.00%), 10 blocks", b.Title);
        Assert.Equal("all: 40,000 bytes (100.00%), 40 blocks", all.Title);
        Assert.Equal(40_000, snapshot.TotalSize);

        // Labels: the whole label where it fits, inside its bar.
        Assert.Equal("a.lua:10 (fa)", a.Text);
        Assert.Equal("b.lua:20 (fb)", b.Text);
        Assert.Equal("main.lua:1 (<main>)", main.Text);
        foreach (Bar bar in new[] { all, main, a, b })
        {
            Assert.True(bar.TextX > bar.X && bar.TextX < bar.X + bar.Width && bar.TextY > bar.Y && bar.TextY < bar.Y + bar.Height,
                $"the label of {bar.Title} is inside its bar");
        }

        // Deterministic colours: the same frame, the same colour, in another graph too.
        Assert.Equal(TraceSnapshot.FlameColor("a.lua:10 (fa)"), a.Fill);
        Assert.Equal(svg, Draw(out _));
    }

    [Fact]
    public void A_label_too_long_for_its_bar_is_cut_and_an_empty_snapshot_draws_an_empty_root()
    {
        var traces = new List<Trace>
        {
            new(0, 999_000, new Traceback([new Frame("big.lua", 1, "f")])),
            new(0, 1_000, new Traceback([new Frame("a_rather_long_file_name_for_a_thin_bar.lua", 123, "some_function")])),
        };
        Dictionary<string, Bar> bars = Bars(Svg(new TraceSnapshot(traces, 1)));
        Bar thin = bars["a_rather_long_file_name_for_a_thin_bar.lua:123 (some_function)"];
        Assert.Null(thin.Text); // about 1.2 px: no room for three characters, the tooltip still has it all

        traces[1] = new(0, 100_000, traces[1].Traceback);
        bars = Bars(Svg(new TraceSnapshot(traces, 1)));
        thin = bars["a_rather_long_file_name_for_a_thin_bar.lua:123 (some_function)"];
        Assert.NotNull(thin.Text);
        Assert.EndsWith("..", thin.Text);
        Assert.True(thin.Text.Length * 7.0 <= thin.Width - 6, $"'{thin.Text}' fits {thin.Width} px");

        bars = Bars(Svg(new TraceSnapshot([], 1)));
        Assert.Equal("all: 0 bytes (0.00%), 0 blocks", Assert.Single(bars.Values).Title);

        static string Svg(TraceSnapshot snapshot)
        {
            var writer = new StringWriter();
            snapshot.WriteFlameGraph(writer);
            return writer.ToString();
        }
    }

    [Fact]
    public void Markup_and_control_characters_in_a_frame_make_valid_xml()
    {
        var snapshot = new TraceSnapshot([new Trace(0, 100, new Traceback([new Frame("a<&>\"'\u0001.lua", 2, "f\tg")]))], 1);
        var writer = new StringWriter();
        snapshot.WriteFlameGraph(writer, "<title & more>");
        Dictionary<string, Bar> bars = Bars(writer.ToString()); // parses as XML
        Assert.Contains("a<&>\"'\uFFFD.lua:2 (f\uFFFDg)", bars.Keys);
    }

    /// <summary>Where <c>rsvg-convert</c> is, or null.</summary>
    private static string? RsvgConvert() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, "rsvg-convert")).FirstOrDefault(File.Exists);

    [SkippableFact]
    public void Rendered_by_rsvg_convert_the_bars_show_75_and_25_percent_in_their_colours_on_their_rows()
    {
        string? rsvg = RsvgConvert();
        Skip.If(rsvg is null, "optional tool missing: rsvg-convert is not on PATH. Install it (Debian: librsvg2-bin).");
        string svg = Draw(out _);
        Dictionary<string, Bar> bars = Bars(svg);
        string dir = Directory.CreateTempSubdirectory("runtimemem-flame-").FullName;
        try
        {
            string svgPath = Path.Combine(dir, "flame.svg"), pngPath = Path.Combine(dir, "flame.png");
            File.WriteAllText(svgPath, svg);
            var start = new ProcessStartInfo(rsvg!, ["-f", "png", "-o", pngPath, svgPath]) { RedirectStandardError = true };
            using (Process process = Process.Start(start)!)
            {
                string error = process.StandardError.ReadToEnd();
                Assert.True(process.WaitForExit(60_000), "rsvg-convert finished");
                Assert.True(process.ExitCode == 0, $"rsvg-convert exit {process.ExitCode}: {error}");
            }

            Png png = Png.Read(File.ReadAllBytes(pngPath));
            Assert.Equal((TraceSnapshot.FlameGraphWidth, (int)double.Parse(XDocument.Parse(svg).Root!.Attribute("height")!.Value, CultureInfo.InvariantCulture)),
                (png.Width, png.Height));
            Bar a = bars["a.lua:10 (fa)"], b = bars["b.lua:20 (fb)"], all = bars["all"];
            Assert.NotEqual(a.Fill, b.Fill); // else the pixels could not tell them apart

            // On a's row, the pixel row just below the bar's top edge (above the text's ascenders): the run of a's
            // colour and the run of b's colour, measured in pixels.
            int y = (int)a.Y + 1;
            (int aFrom, int aTo) = Run(png, y, a.Fill);
            (int bFrom, int bTo) = Run(png, y, b.Fill);
            (int rootFrom, int rootTo) = Run(png, (int)all.Y + 1, all.Fill);
            double rootWidth = rootTo - rootFrom + 1;
            Assert.InRange(rootWidth, all.Width - 2, all.Width + 2);
            Assert.InRange((aTo - aFrom + 1) / rootWidth, 0.745, 0.755);
            Assert.InRange((bTo - bFrom + 1) / rootWidth, 0.245, 0.255);
            Assert.InRange(aFrom, rootFrom - 1, rootFrom + 1); // a starts where the root starts, b right after a
            Assert.InRange(bFrom, aTo, aTo + 2);

            // A and B are drawn on their row and nowhere else: a row below (main's) has neither colour.
            int below = (int)bars["main.lua:1 (<main>)"].Y + 1;
            Assert.Equal(0, Count(png, below, a.Fill) + Count(png, below, b.Fill));

            // The labels are drawn: dark pixels inside a's bar where its text is.
            int dark = 0;
            for (int x = (int)a.TextX; x < a.TextX + ("a.lua:10 (fa)".Length * 7); x++)
            {
                for (int yy = (int)a.Y + 1; yy < a.Y + a.Height - 1; yy++)
                {
                    (byte r, byte g, byte bl, _) = png[x, yy];
                    dark += r + g + bl < 200 ? 1 : 0;
                }
            }

            Assert.True(dark > 20, $"the label of a is drawn ({dark} dark pixels)");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static bool Near((byte R, byte G, byte B, byte A) pixel, (int R, int G, int B) colour) =>
        Math.Abs(pixel.R - colour.R) <= 2 && Math.Abs(pixel.G - colour.G) <= 2 && Math.Abs(pixel.B - colour.B) <= 2 && pixel.A == 255;

    private static int Count(Png png, int y, (int R, int G, int B) colour) =>
        Enumerable.Range(0, png.Width).Count(x => Near(png[x, y], colour));

    /// <summary>The first and last x of pixels of <paramref name="colour"/> on row <paramref name="y"/>, which must be one run.</summary>
    private static (int From, int To) Run(Png png, int y, (int R, int G, int B) colour)
    {
        int[] xs = Enumerable.Range(0, png.Width).Where(x => Near(png[x, y], colour)).ToArray();
        Assert.True(xs.Length > 0, $"colour {colour} on row {y}");
        Assert.Equal(xs[^1] - xs[0] + 1, xs.Length); // one unbroken bar
        return (xs[0], xs[^1]);
    }
}
