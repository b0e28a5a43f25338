using System.Runtime.CompilerServices;

namespace Runtime.Memory.Allocators;

/// <summary>Overflow-checked size arithmetic, the one place sizes are multiplied or added.</summary>
internal static class SizeMath
{
    /// <summary><c>count × size</c>, or <see langword="false"/> when the product does not fit in <see cref="nuint"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryMultiply(nuint count, nuint size, out nuint product)
    {
        ulong high = Math.BigMul((ulong)count, (ulong)size, out ulong low);
        product = (nuint)low;
        return high == 0 && (nuint.Size == 8 || low <= uint.MaxValue);
    }
}
