namespace Runtime.Memory.Debugging;

/// <summary>A misuse found by the debug hooks under <see cref="ViolationAction.Throw"/>.</summary>
public sealed class MemoryViolationException : Exception
{
    /// <summary>Wraps <paramref name="violation"/>; the message is its full report.</summary>
    public MemoryViolationException(MemoryViolation violation)
        : base((violation ?? throw new ArgumentNullException(nameof(violation))).Report)
    {
        Violation = violation;
    }

    /// <summary>What was found.</summary>
    public MemoryViolation Violation { get; }
}
