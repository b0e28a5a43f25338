using System.Text;
using Runtime.Memory.Diagnostics;

namespace Runtime.Memory.Testing;

/// <summary>Thrown by <see cref="MemoryAssert"/> when memory is still live that should not be.</summary>
public sealed class LiveBlocksException(string message) : Exception(message);
