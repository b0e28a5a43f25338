using System.Text.RegularExpressions;
using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;

namespace Runtime.Memory.Tests.Docs;

/// <summary>
/// Every C# block of the README compiles against the library as it is, so an example cannot go stale. A block is a
/// fragment: it is compiled as the body of a method whose parameters are the names the README's prose introduces
/// (<c>services</c>, <c>provider</c>, <c>runtime</c>, <c>memory</c>, <c>n</c>, <c>data</c>), with the README's using
/// directives, in an unsafe context (the README says callers need <c>AllowUnsafeBlocks</c>).
/// </summary>
public sealed partial class ReadmeSnippetTests
{
    private const string Prelude = """
        using System;
        using System.Buffers;
        using System.IO.Pipelines;
        using System.Linq;
        using System.Security.Cryptography;
        using Microsoft.Extensions.DependencyInjection;
        using Runtime.Memory;
        using Runtime.Memory.Allocators;
        using Runtime.Memory.Buffers;
        using Runtime.Memory.Diagnostics;
        using Runtime.Memory.Extensions.OpenSsl;
        using Runtime.Memory.Extensions.Zlib;
        using Runtime.Memory.Hosting;
        using Runtime.Memory.Testing;
        using Runtime.Memory.Tracing;

        internal sealed class MyTracingHook : MemoryHook { }

        internal static unsafe class Snippet
        {
            internal static void Run(PARAMETERS)
            {
        """;

    /// <summary>The names the README's prose introduces, with their types; a block that declares one itself gets no parameter for it.</summary>
    private static readonly (string Type, string Name)[] Names =
    [
        ("IServiceCollection", "services"), ("IServiceProvider", "provider"), ("RuntimeMemory", "runtime"),
        ("IRuntimeMemory", "memory"), ("nuint", "n"), ("byte[]", "data"),
    ];

    private const string Epilogue = """

            }
        }
        """;

    public static TheoryData<int, string> Blocks()
    {
        var data = new TheoryData<int, string>();
        string readme = File.ReadAllText(Path.Combine(RepositoryRoot(), "README.md")).ReplaceLineEndings("\n");
        foreach (Match m in CSharpBlock().Matches(readme))
        {
            int line = readme[..m.Index].Count(c => c == '\n') + 1;
            data.Add(line, m.Groups[1].Value);
        }

        return data;
    }

    [Fact]
    public void The_readme_has_csharp_blocks()
    {
        Assert.True(Blocks().Count >= 5, "the README's C# examples were not found (```csharp blocks)");
    }

    [Theory]
    [MemberData(nameof(Blocks))]
    public void A_csharp_block_of_the_readme_compiles(int line, string code)
    {
        var options = new CSharpParseOptions(LanguageVersion.Latest);
        HashSet<string> declared = CSharpSyntaxTree.ParseText(Prelude + code + Epilogue, options).GetRoot().DescendantNodes()
            .OfType<Microsoft.CodeAnalysis.CSharp.Syntax.VariableDeclaratorSyntax>().Select(v => v.Identifier.Text).ToHashSet();
        string parameters = string.Join(", ", Names.Where(p => !declared.Contains(p.Name)).Select(p => $"{p.Type} {p.Name}"));
        SyntaxTree tree = CSharpSyntaxTree.ParseText(Prelude.Replace("PARAMETERS", parameters) + code + Epilogue, options);
        CSharpCompilation compilation = CSharpCompilation.Create(
            $"ReadmeLine{line}",
            [tree],
            References.Value,
            new CSharpCompilationOptions(OutputKind.DynamicallyLinkedLibrary, allowUnsafe: true, nullableContextOptions: NullableContextOptions.Enable));
        string[] errors = compilation.GetDiagnostics()
            .Where(d => d.Severity == DiagnosticSeverity.Error)
            .Select(d => $"README.md:{line + d.Location.GetLineSpan().StartLinePosition.Line - PreludeLines + 1}: {d.Id} {d.GetMessage(System.Globalization.CultureInfo.InvariantCulture)}")
            .ToArray();
        Assert.True(errors.Length == 0, $"the C# block at README.md line {line} does not compile:\n{string.Join("\n", errors)}");
    }

    private static readonly int PreludeLines = Prelude.Count(c => c == '\n') + 1;

    /// <summary>The platform assemblies and every assembly beside the tests (the library and its dependencies).</summary>
    private static readonly Lazy<MetadataReference[]> References = new(() =>
    {
        var paths = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (string path in ((string)AppContext.GetData("TRUSTED_PLATFORM_ASSEMBLIES")!).Split(Path.PathSeparator))
        {
            paths.TryAdd(Path.GetFileName(path), path);
        }

        foreach (string path in Directory.GetFiles(AppContext.BaseDirectory, "*.dll"))
        {
            paths.TryAdd(Path.GetFileName(path), path);
        }

        return paths.Values.Where(IsManaged).Select(p => (MetadataReference)MetadataReference.CreateFromFile(p)).ToArray();
    });

    private static bool IsManaged(string path)
    {
        try
        {
            System.Reflection.AssemblyName.GetAssemblyName(path);
            return true;
        }
        catch (BadImageFormatException)
        {
            return false;
        }
    }

    internal static string RepositoryRoot()
    {
        string? root = AppContext.BaseDirectory;
        while (root is not null && !File.Exists(Path.Combine(root, "RuntimeMem.sln")))
        {
            root = Path.GetDirectoryName(root);
        }

        return root ?? throw new InvalidOperationException("the repository root (RuntimeMem.sln) is not above the test binaries");
    }

    [GeneratedRegex("```csharp\n(.*?)```", RegexOptions.Singleline)]
    private static partial Regex CSharpBlock();
}
