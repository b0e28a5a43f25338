
namespace Runtime.Memory.Allocators.SmallObject;

/// <summary>One size class in <see cref="SmallObjectStatistics"/>.</summary>
/// <param name="Index">Class index (0 for 16 bytes ... 31 for 512).</param>
/// <param name="Size">Block size in bytes.</param>
/// <param name="Pools">Pools of this class in use.</param>
/// <param name="BlocksInUse">Blocks handed out and not freed.</param>
/// <param name="AvailableBlocks">Free blocks in those pools (including never-used ones).</param>
public sealed record SizeClassStatistics(int Index, int Size, long Pools, long BlocksInUse, long AvailableBlocks);
