using System.Text.RegularExpressions;

namespace Runtime.Memory.Tests.Pipeline;

/// <summary>
/// The domain decides nothing per call and knows no allocator: no file of <c>MemoryDomain</c> tests the type of a
/// concrete allocator or hook (each allocator on top of a chain chooses its pipeline instead), so a new built-in
/// allocator or hook never needs the domain edited.
/// </summary>
public sealed class DomainKnowsNoAllocatorTests
{
    [Fact]
    public void No_file_of_MemoryDomain_type_tests_a_concrete_allocator_or_hook()
    {
        string root = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(root, "RuntimeMem.sln")))
        {
            root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("the repository root (RuntimeMem.sln) is not above the test binaries");
        }

        string[] concrete = typeof(MemoryAllocator).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(MemoryAllocator)) && !t.IsAbstract)
            .Select(t => t.Name)
            .ToArray();
        Assert.Contains("SmallObjectAllocator", concrete);
        Assert.Contains("TracingHook", concrete);

        string[] files = Directory.GetFiles(Path.Combine(root, "Runtime.Memory"), "MemoryDomain*.cs");
        Assert.NotEmpty(files);
        var found = new List<string>();
        foreach (string file in files)
        {
            string[] lines = File.ReadAllLines(file);
            for (int i = 0; i < lines.Length; i++)
            {
                string code = lines[i].Split("//")[0]; // type names in comments are fine
                foreach (string name in concrete)
                {
                    if (Regex.IsMatch(code, $@"\b(is|as)\s+(not\s+)?{name}\b|\({name}\)\s*\w|typeof\({name}\)|{name}\s*\{{"))
                    {
                        found.Add($"{Path.GetFileName(file)}:{i + 1}: {lines[i].Trim()}");
                    }
                }
            }
        }

        Assert.True(found.Count == 0, "MemoryDomain type-tests concrete allocators:\n" + string.Join("\n", found));
    }
}
