using System.Text;
using Runtime.Memory.Diagnostics;

namespace Runtime.Memory.Testing;

/// <summary>Assertions on domain accounting, usable from any test framework.</summary>
public static class MemoryAssert
{
    /// <summary>Throws <see cref="LiveBlocksException"/> unless <paramref name="domain"/> has no live blocks.</summary>
    public static void NoLiveBlocks(MemoryDomain domain)
    {
        ArgumentNullException.ThrowIfNull(domain);
        DomainStatistics s = domain.GetStatistics();
        if (s.LiveBlocks != 0)
        {
            throw new LiveBlocksException($"Expected no live blocks, but {Describe(s)}.");
        }
    }

    /// <summary>Throws <see cref="LiveBlocksException"/> unless every domain of <paramref name="runtime"/> has no live blocks.</summary>
    public static void NoLiveBlocks(IRuntimeMemory runtime)
    {
        ArgumentNullException.ThrowIfNull(runtime);
        var leaks = new StringBuilder();
        foreach (DomainStatistics s in runtime.GetStatistics().Domains)
        {
            if (s.LiveBlocks != 0)
            {
                leaks.Append(leaks.Length == 0 ? "" : "; ").Append(Describe(s));
            }
        }

        if (leaks.Length > 0)
        {
            throw new LiveBlocksException($"Expected no live blocks, but {leaks}.");
        }
    }

    private static string Describe(DomainStatistics s) =>
        $"the {s.Domain.ToName()} domain has {s.LiveBlocks} live block{(s.LiveBlocks == 1 ? "" : "s")} ({s.LiveBytes} bytes)";
}
