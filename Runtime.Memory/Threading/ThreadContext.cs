using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Runtime.Memory.Accounting;

namespace Runtime.Memory.Threading;

/// <summary>
/// One thread's state for one runtime: what the allocation fast path touches, in one unmanaged block that the thread
/// reaches with one thread-static load (<see cref="ThreadContexts.Find"/>).
/// </summary>
/// <remarks>
/// <code>
/// ThreadContext (unmanaged, 64-byte aligned, zeroed when created)
///   +0   InCall        front-door calls of this runtime the thread is inside (the runtime's Dispose waits for 0)
///   +4   _released     which parties have let go: Party.Runtime, Party.Thread (the second one frees the block)
///   +8   Owner         the runtime's id; never reused, so a stale table entry can never match a new runtime
///   +16  Shard         weak GCHandle of the runtime's managed record of this thread (ThreadShard: the tracer's state)
///   +24  NextOfThread  the thread's list of its contexts (ThreadContexts), for the thread's own release
///   +32  Slot          the runtime's slot in the thread's table
///   +64  Heaps[3]      per domain (raw, mem, obj): this thread's heap of the domain's small-object allocator (16 bytes)
///   +128 Accounts[32]  per account: the thread's counters (DomainCounters, 64 bytes = one cache line each); accounts
///                      0-2 are the domains, 3-31 library tags (MemoryAccounting.AccountCount)
/// </code>
/// <para><b>Who writes what.</b> Only the owning thread writes <see cref="InCall"/>, the heaps and the counters; other
/// threads read the counters when they sum (<see cref="MemoryAccounting"/>) and <see cref="InCall"/> when the runtime
/// is disposed. Nothing here is written by another thread, so the fast path needs no atomic.</para>
/// <para><b>Lifetime.</b> Two parties hold a context: the runtime (which sums its counters) and the thread (whose table
/// points at it). The runtime lets go when it folds an ended thread's counters into its totals or when it is disposed;
/// the thread lets go when it ends, or when it finds, on a slow path, that the runtime has let go. Whichever is second
/// frees the block (<see cref="Release"/>), so neither ever reads freed memory: a thread that calls a disposed runtime
/// still finds its own context, counts its call in it and meets the closed pipeline.</para>
/// </remarks>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct ThreadContext
{
    /// <summary>Front-door calls in flight on the owning thread (volatile stores by the owner; read by Dispose).</summary>
    public int InCall;

    private int _released;

    /// <summary>The id of the runtime (its <see cref="MemoryAccounting"/>) this context belongs to.</summary>
    public long Owner;

    /// <summary>Weak GCHandle of the runtime's <see cref="ThreadShard"/> for this thread.</summary>
    public nint Shard;

    /// <summary>Next context of the same thread (the thread's list, walked only by the thread or after it ended).</summary>
    public ThreadContext* NextOfThread;

    /// <summary>The runtime's slot in the thread's table (<see cref="ThreadContexts"/>).</summary>
    public int Slot;

    private fixed byte _pad[28];

    /// <summary>Per domain: the heap cache, indexed by <see cref="MemoryDomainKind"/>.</summary>
    public HeapSlots Heaps;

    private fixed byte _pad2[16];

    /// <summary>Per account (domains first, then library tags): this thread's counters.</summary>
    public AccountCounters Accounts;

    /// <summary>Which party lets go of a context.</summary>
    public const int RuntimeParty = 1;

    /// <inheritdoc cref="RuntimeParty"/>
    public const int ThreadParty = 2;

    /// <summary>Whether the runtime has let go (the thread may then free it on its next slow path).</summary>
    public readonly bool RuntimeReleased => (Volatile.Read(ref Unsafe.AsRef(in _released)) & RuntimeParty) != 0;

    /// <summary>A new, zeroed context of <paramref name="owner"/> (<see cref="NativeMemory"/> throws
    /// <see cref="OutOfMemoryException"/> when memory cannot be had).</summary>
    public static ThreadContext* Create(long owner, int slot)
    {
        var context = (ThreadContext*)NativeMemory.AlignedAlloc((nuint)sizeof(ThreadContext), 64);
        if (context == null)
        {
            return null;
        }

        NativeMemory.Clear(context, (nuint)sizeof(ThreadContext));
        context->Owner = owner;
        context->Slot = slot;
        return context;
    }

    /// <summary>
    /// <paramref name="party"/> lets go of <paramref name="context"/> (each party once); the second to do so frees it.
    /// </summary>
    public static void Release(ThreadContext* context, int party)
    {
        int before = Interlocked.Or(ref context->_released, party);
        System.Diagnostics.Debug.Assert((before & party) == 0, "a party released a context twice");
        if ((before | party) == (RuntimeParty | ThreadParty))
        {
            NativeMemory.AlignedFree(context);
        }
    }
}

/// <summary>One domain's heap cache in a <see cref="ThreadContext"/>.</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct HeapSlot
{
    /// <summary>This thread's heap of the small-object allocator whose id is <see cref="HeapOwner"/> (null: the thread
    /// has only freed there so far).</summary>
    public Heap* Heap;

    /// <summary>Id of the small-object allocator <see cref="Heap"/> belongs to (<see cref="SmallObjectAllocator.Id"/>);
    /// 0 when none is bound. Compared on every call, so that a domain whose allocator was replaced rebinds.</summary>
    public long HeapOwner;
}

[InlineArray(MemoryDomainKindExtensions.Count)]
internal struct HeapSlots
{
    private HeapSlot _element;
}

[InlineArray(MemoryAccounting.AccountCount)]
internal struct AccountCounters
{
    private DomainCounters _element;
}
