namespace Runtime.Memory.Diagnostics;

/// <summary>What one library tag's routes hold (<see cref="LibraryAccount"/> read at one moment).</summary>
/// <param name="Tag">The library's tag.</param>
/// <param name="LiveBlocks">Blocks the library holds.</param>
/// <param name="LiveBytes">Bytes the library holds (the sizes it asked for).</param>
/// <param name="PeakBytes">The most bytes it has held at once.</param>
/// <param name="Allocations">Allocations (a realloc counts as one allocation and one free).</param>
/// <param name="Frees">Frees.</param>
/// <param name="BytesAllocated">Bytes asked for over the library's life.</param>
/// <param name="Failures">Requests that returned null, for any reason.</param>
/// <param name="LimitRefusals">The part of <paramref name="Failures"/> that the tag's budget refused.</param>
/// <param name="MaxBytes">The tag's budget, or null for none.</param>
public sealed record LibraryStatistics(
    string Tag, long LiveBlocks, long LiveBytes, long PeakBytes, long Allocations, long Frees, long BytesAllocated,
    long Failures, long LimitRefusals, long? MaxBytes)
{
    internal static LibraryStatistics Of(LibraryAccount a) =>
        new(a.Tag, a.LiveBlocks, a.LiveBytes, a.PeakBytes, a.Allocations, a.Frees, a.BytesAllocated, a.Failures, a.LimitRefusals, a.MaxBytes);
}
