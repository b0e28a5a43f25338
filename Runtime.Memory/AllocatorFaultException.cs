namespace Runtime.Memory;

/// <summary>
/// Describes an exception an allocator or hook threw into a domain (<see cref="MemoryDomain.LastFault"/>). It is never
/// thrown by the domain, which returns null instead; the original exception is the inner exception.
/// </summary>
public sealed class AllocatorFaultException(string message, Exception inner) : Exception(message, inner);
