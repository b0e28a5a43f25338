using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;

namespace Runtime.Memory.Tests.Packaging;

/// <summary>
/// The shipped projects' sources follow the .NET layout conventions: a file's namespace is its project's root
/// namespace plus its folders, and a file declares at most one public top-level type, named as the file. The one
/// exception is the one Microsoft.Extensions libraries make: the DI registration extensions and their builder live in
/// <c>Microsoft.Extensions.DependencyInjection</c>, so that <c>services.AddRuntimeMemory()</c> needs no extra using.
/// </summary>
public sealed class SourceLayoutTests
{
    public static TheoryData<string> ShippedProjects() => new() { "Runtime.Memory", "Runtime.Memory.Testing" };

    [Theory]
    [MemberData(nameof(ShippedProjects))]
    public void Namespaces_follow_folders_and_each_file_has_one_public_type(string project)
    {
        string root = Path.Combine(Docs.ReadmeSnippetTests.RepositoryRoot(), project);
        var problems = new List<string>();
        int files = 0;
        foreach (string path in Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(root, path).Replace('\\', '/');
            if (relative.StartsWith("obj/", StringComparison.Ordinal) || relative.StartsWith("bin/", StringComparison.Ordinal))
            {
                continue;
            }

            files++;
            var tree = (CompilationUnitSyntax)CSharpSyntaxTree.ParseText(File.ReadAllText(path)).GetRoot();
            string folder = Path.GetDirectoryName(relative)!.Replace('/', '.');
            string expected = folder.Length == 0 ? project : $"{project}.{folder}";
            string fileType = Path.GetFileName(path).Split('.')[0];
            List<BaseNamespaceDeclarationSyntax> namespaces = tree.Members.OfType<BaseNamespaceDeclarationSyntax>().ToList();
            var publicTypes = new List<string>();
            foreach (BaseNamespaceDeclarationSyntax ns in namespaces)
            {
                string name = ns.Name.ToString();
                List<MemberDeclarationSyntax> types = ns.Members.Where(m => m is BaseTypeDeclarationSyntax or DelegateDeclarationSyntax).ToList();
                bool diExtensions = name == "Microsoft.Extensions.DependencyInjection"
                    && types.All(t => TypeName(t) is { } n && (n.EndsWith("Extensions", StringComparison.Ordinal) || n.EndsWith("Builder", StringComparison.Ordinal)));
                if (name != expected && !diExtensions)
                {
                    problems.Add($"{relative}: namespace {name}, folder says {expected}");
                }

                publicTypes.AddRange(types.Where(t => t.Modifiers.Any(SyntaxKind.PublicKeyword)).Select(t => TypeName(t)!));
            }

            if (tree.Members.Any(m => m is BaseTypeDeclarationSyntax or DelegateDeclarationSyntax))
            {
                problems.Add($"{relative}: a type outside any namespace");
            }

            if (publicTypes.Count > 1)
            {
                problems.Add($"{relative}: {publicTypes.Count} public types ({string.Join(", ", publicTypes)})");
            }
            else if (publicTypes.Count == 1 && publicTypes[0] != fileType)
            {
                problems.Add($"{relative}: public type {publicTypes[0]} in a file named {fileType}");
            }
        }

        Assert.True(files > 0, $"no sources under {root}");
        Assert.True(problems.Count == 0, $"{problems.Count} layout problems:\n" + string.Join("\n", problems));
    }

    /// <summary>
    /// <see cref="IRuntimeMemory"/> carries what a host needs: the reference host and the samples never cast it (nor
    /// resolve the concrete class from the container) to reach the tags, the tracer, the statistics or the metrics.
    /// </summary>
    [Fact]
    public void The_host_and_the_samples_use_IRuntimeMemory_without_casting_it()
    {
        string repository = Docs.ReadmeSnippetTests.RepositoryRoot();
        var cast = new System.Text.RegularExpressions.Regex(@"\(RuntimeMemory\)|\bas RuntimeMemory\b|\bis RuntimeMemory\b|Service<RuntimeMemory>");
        var found = new List<string>();
        int files = 0;
        foreach (string folder in new[] { "Runtime.Host", "samples" })
        {
            foreach (string path in Directory.EnumerateFiles(Path.Combine(repository, folder), "*.cs", SearchOption.AllDirectories))
            {
                if (path.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
                {
                    continue;
                }

                files++;
                string[] lines = File.ReadAllLines(path);
                for (int i = 0; i < lines.Length; i++)
                {
                    if (cast.IsMatch(lines[i]))
                    {
                        found.Add($"{Path.GetRelativePath(repository, path)}:{i + 1}: {lines[i].Trim()}");
                    }
                }
            }
        }

        Assert.True(files > 10, $"only {files} sources found");
        Assert.True(found.Count == 0, "casts to the concrete runtime:\n" + string.Join("\n", found));
    }

    private static string? TypeName(MemberDeclarationSyntax type) => type switch
    {
        BaseTypeDeclarationSyntax t => t.Identifier.ValueText,
        DelegateDeclarationSyntax d => d.Identifier.ValueText,
        _ => null,
    };
}
