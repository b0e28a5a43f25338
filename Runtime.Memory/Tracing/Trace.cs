using System.Globalization;
using System.Text.RegularExpressions;

namespace Runtime.Memory.Tracing;

/// <summary>One traced block in a snapshot: its trace domain, size, traceback, and how many blocks it stands for (1
/// when tracing exactly; more when it was sampled, with <see cref="Size"/> scaled the same way).</summary>
public readonly record struct Trace(uint Domain, long Size, Traceback Traceback, long Count = 1);
