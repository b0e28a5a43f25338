using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Runtime.Memory.Threading;

/// <summary>
/// The calling thread's contexts, one per runtime it has used: a table indexed by the runtime's slot, reached in one
/// thread-static load, and a list of all of them for the thread's own release.
/// </summary>
/// <remarks>
/// <code>
/// t_table (unmanaged, per thread, allocated on first use)
///   [0 .. Slots-1]  { Owner, Context* }   entry s: the context of the runtime using slot s, if its Owner matches
///   [Slots]         { -, list head }      every context of this thread, linked through NextOfThread
/// </code>
/// <para><b>Fast path</b> (<see cref="Find"/>): the thread-static load, the entry of the runtime's slot, a compare of its
/// owner id: no lock, no atomic, no managed object. Runtimes take one of <see cref="Slots"/> − 1 slots for as long as they
/// live; the last slot is shared by any further runtimes (each then rebinds it from the list on a miss, correct but
/// slower), so any number of runtimes work, and up to 63 alternate on one thread without a miss.</para>
/// <para><b>Ids, not slots, decide.</b> An entry is used only when its owner id equals the runtime's, and ids are never
/// reused, so an entry left behind by a disposed runtime whose slot was given to another never matches.</para>
/// <para><b>Thread end.</b> A finalizable sentinel in a thread-static field becomes unreachable when the thread ends;
/// its finalizer releases the thread's party of every context in the list (<see cref="ThreadContext.Release"/>) and frees
/// the table. Until then the thread's slow path frees contexts whose runtime has let go.</para>
/// </remarks>
internal static unsafe class ThreadContexts
{
    /// <summary>Entries in a thread's table; the last is shared by runtimes beyond the first <c>Slots − 1</c>.</summary>
    public const int Slots = 64;

    /// <summary>The slot shared by runtimes that found no free one.</summary>
    public const int SharedSlot = Slots - 1;

    private struct Entry
    {
        public long Owner;
        public ThreadContext* Context;
    }

    [ThreadStatic]
    private static Entry* t_table;

    [ThreadStatic]
    private static ThreadEnd? t_end;

    /// <summary>The calling thread's context of the runtime <paramref name="owner"/> in <paramref name="slot"/>, or null
    /// (not in the table: see <see cref="FindListed"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ThreadContext* Find(int slot, long owner)
    {
        Entry* table = t_table;
        if (table != null)
        {
            Entry* entry = table + slot;
            if (entry->Owner == owner)
            {
                return entry->Context;
            }
        }

        return null;
    }

    /// <summary>
    /// Slow path of <see cref="Find"/>: frees the contexts whose runtime has let go, then looks for
    /// <paramref name="owner"/>'s context in the thread's list and puts it back in the table; null when the thread has
    /// none yet.
    /// </summary>
    public static ThreadContext* FindListed(int slot, long owner)
    {
        Entry* table = t_table;
        if (table == null)
        {
            return null;
        }

        ThreadContext* found = null;
        ThreadContext** link = &table[Slots].Context;
        while (*link != null)
        {
            ThreadContext* context = *link;
            if (context->RuntimeReleased)
            {
                *link = context->NextOfThread;
                Entry* entry = table + context->Slot;
                if (entry->Context == context)
                {
                    entry->Owner = 0;
                    entry->Context = null;
                }

                ThreadContext.Release(context, ThreadContext.ThreadParty);
                continue;
            }

            if (context->Owner == owner)
            {
                found = context;
            }

            link = &context->NextOfThread;
        }

        if (found != null)
        {
            table[slot].Owner = owner;
            table[slot].Context = found;
        }

        return found;
    }

    /// <summary>Adds a new context of the calling thread to its list and its table (allocating the table on the thread's
    /// first context: <see cref="NativeMemory"/> throws <see cref="OutOfMemoryException"/> when it cannot).</summary>
    public static bool Adopt(ThreadContext* context)
    {
        Entry* table = t_table;
        if (table == null)
        {
            table = (Entry*)NativeMemory.AllocZeroed((nuint)(Slots + 1), (nuint)sizeof(Entry));
            if (table == null)
            {
                return false;
            }

            t_end = new ThreadEnd(table);
            t_table = table;
        }

        context->NextOfThread = table[Slots].Context;
        table[Slots].Context = context;
        table[context->Slot].Owner = context->Owner;
        table[context->Slot].Context = context;
        return true;
    }

    /// <summary>Releases a thread's contexts and frees its table once the thread has ended (its thread statics are gone).</summary>
    private sealed class ThreadEnd(Entry* table)
    {
        ~ThreadEnd()
        {
            ThreadContext* context = table[Slots].Context;
            while (context != null)
            {
                ThreadContext* next = context->NextOfThread;
                ThreadContext.Release(context, ThreadContext.ThreadParty);
                context = next;
            }

            NativeMemory.Free(table);
        }
    }

    // ---- slots ----------------------------------------------------------------------------------------------

    private static long s_nextOwner;
    private static ulong s_slotsInUse;
    private static readonly Lock s_slotLock = new();

    /// <summary>A new runtime id (never 0, never reused).</summary>
    public static long NewOwner() => Interlocked.Increment(ref s_nextOwner);

    /// <summary>A free slot for a new runtime, or <see cref="SharedSlot"/> when all are taken.</summary>
    public static int TakeSlot()
    {
        lock (s_slotLock)
        {
            for (int s = 0; s < SharedSlot; s++)
            {
                if ((s_slotsInUse & (1UL << s)) == 0)
                {
                    s_slotsInUse |= 1UL << s;
                    return s;
                }
            }

            return SharedSlot;
        }
    }

    /// <summary>Gives back a slot taken with <see cref="TakeSlot"/> (the runtime has let go of its contexts).</summary>
    public static void ReturnSlot(int slot)
    {
        if (slot == SharedSlot)
        {
            return;
        }

        lock (s_slotLock)
        {
            s_slotsInUse &= ~(1UL << slot);
        }
    }
}
