using System.Globalization;
using System.Text;

namespace Runtime.Memory.Debugging;

/// <summary>What the debug hooks found wrong with a free or realloc.</summary>
public enum MemoryViolationKind
{
    /// <summary>The block was allocated by another domain (CPython's "bad ID").</summary>
    WrongDomain,

    /// <summary>A leading pad byte or the API id byte was overwritten: something wrote before the start of the data.</summary>
    BadLeadingPad,

    /// <summary>The size field was overwritten: a write before the start of the data reached it.</summary>
    BadSizeField,

    /// <summary>A trailing pad byte or the serial number after it was overwritten: something wrote past the end of the data.</summary>
    BadTrailingPad,

    /// <summary>The block was freed already: a double free, or a realloc of a freed block.</summary>
    AlreadyFreed,

    /// <summary>Another thread was reallocating the same block at that moment.</summary>
    ConcurrentRealloc,

    /// <summary>The pointer lies inside a live block (or its guard bytes) but is not its start.</summary>
    InteriorPointer,

    /// <summary>No debug hook of this runtime returned the pointer (a foreign pointer, or a long-freed block).</summary>
    UnknownPointer,

    /// <summary>
    /// A built-in allocator found its own bookkeeping damaged: a free-list link that leaves its pool (a write after
    /// free, or an overrun from the block before). Found with or without the debug hooks; <see cref="MemoryViolation.Address"/>
    /// is the free block whose link is damaged.
    /// </summary>
    HeapCorruption,

    /// <summary>
    /// A built-in allocator raised an exception (a fault reading its own bookkeeping): memory corruption, not an
    /// allocation failure. The report names the exception.
    /// </summary>
    AllocatorFault,

    /// <summary>
    /// A byte of a freed block changed while the block was in the debug hooks' quarantine (filled with 0xDD): a write
    /// through a stale pointer. Found when the block leaves the quarantine or the quarantine is flushed;
    /// <see cref="MemoryViolation.Address"/> is the freed block, not the pointer of the call that found it.
    /// </summary>
    WriteAfterFree,
}
