using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;

namespace Runtime.Memory.Tracing;

// Pool blocks on the domains' fast path.
//
// A pool block of the small-object allocator right below the tracer, traced or freed by the domain's inlined path:
// its word is found through the thread's one-pool cache (ThreadShard.TracePool: the words of the pool's dense
// slots, word i for block i), so a thread that keeps allocating from one pool pays no radix walk; another pool
// costs one walk, and the cache then holds that pool.
//
// The cache (ThreadShard.TracePool, TracePoolWords, TracePoolEpoch) is written only by its thread, here; its
// words are valid for TracePoolEpoch, which when set is the shard's TraceEpoch, so one compare with the table's
// current epoch says that the words are this table's and that the shard's pending bytes count for this epoch.
// A dense word is written with a plain store by the block's owner (see TraceTable.Shadow.cs).
internal sealed unsafe partial class TraceTable
{
    /// <summary>The shadow words of the dense slots of the pool at <paramref name="pool"/> (null: none, or not created),
    /// for <paramref name="epoch"/>, the table's current one: when not null, the shard's pending bytes count for it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private ulong* PoolWords(ThreadShard shard, nuint pool, TraceEpoch epoch, bool create) =>
        shard.TracePool == pool && ReferenceEquals(shard.TracePoolEpoch, epoch) ? shard.TracePoolWords : PoolWordsSlow(shard, pool, epoch, create);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private ulong* PoolWordsSlow(ThreadShard shard, nuint pool, TraceEpoch epoch, bool create)
    {
        nuint first = SmallObjectAllocator.FirstDenseSlot(pool);
        ulong* words = _shadow is { } shadow && first != 0 ? shadow.SlotOf(first, create) : null;
        if (words != null) // a pool's dense slots lie in one 1 MiB chunk of the shadow: consecutive words
        {
            shard.TracePool = pool;
            shard.TracePoolWords = words;
            if (!ReferenceEquals(shard.TracePoolEpoch, epoch)) // most misses are another pool of the same epoch: no store of a reference (a write barrier)
            {
                if (!ReferenceEquals(shard.TraceEpoch, epoch))
                {
                    shard.AdoptTraceEpoch(epoch); // clears the cache's epoch
                }

                shard.TracePoolEpoch = epoch; // = shard.TraceEpoch: see ThreadShard.TracePool
            }
        }

        return words;
    }

    /// <summary>
    /// Records the trace of <paramref name="block"/>, which the small-object allocator right below has just handed out
    /// for a request of <paramref name="size"/> bytes (1 to 512, so the block is of the request's class), as its dense
    /// word. False when it does not fit one (no shadow, a traceback id beyond the word's): the caller then calls
    /// <see cref="Add(ThreadShard, uint, nuint, nuint, int, long, long, int)"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool AddPooled(ThreadShard shard, uint domain, void* block, long size, int traceback)
    {
        nuint pool = (nuint)block & ~(nuint)(Allocators.SmallObject.SizeClasses.PoolSize - 1);
        int cls = (int)((size - 1) >> Allocators.SmallObject.SizeClasses.AlignmentShift);
        if ((uint)traceback > MaxShadowTraceback || domain > 2)
        {
            return false;
        }

        TraceEpoch epoch = _epoch;
        ulong* words = PoolWords(shard, pool, epoch, create: true); // the shard counts for epoch when not null
        if (words == null)
        {
            return false;
        }

        StoreDenseWord(shard, epoch, words + SmallObjectAllocator.IndexInPool(block, pool, cls), domain, traceback, cls, size);
        return true;
    }

    /// <summary>Writes a pool block's dense word for this epoch and counts its size (less that of a word of this
    /// epoch it replaces: only when the block's free was missed, a wrong-domain free). The shard counts for
    /// <paramref name="epoch"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreDenseWord(ThreadShard shard, TraceEpoch epoch, ulong* slot, uint domain, int traceback, int cls, long size)
    {
        ulong old = Volatile.Read(ref *slot);
        Volatile.Write(ref *slot, epoch.GenerationBits | ((ulong)domain << 54) | ((ulong)traceback << 32) | ((ulong)(uint)cls << 16) | (ulong)size);
        AccountInEpoch(shard, epoch, size - (IsOf(epoch, old) ? SizeOf(old, dense: true) : 0));
    }

    /// <summary>
    /// <see cref="AddPooled"/> on the domain's exact fast path: when the thread's one-pool cache holds the block's pool
    /// for this table, the word and the thread's traced bytes with no lookup; another pool costs one out-of-line radix
    /// walk, after which the cache holds it. False, with nothing done, when the word cannot be had (its chunk of the
    /// shadow cannot be mapped) or for a traceback id beyond a word's. <paramref name="domain"/> is one of the runtime's three.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool TryAddPooledCached(ThreadShard shard, uint domain, void* block, nuint size, int traceback)
    {
        nuint pool = (nuint)block & ~(nuint)(Allocators.SmallObject.SizeClasses.PoolSize - 1);
        TraceEpoch epoch = _epoch;
        if ((uint)traceback > MaxShadowTraceback)
        {
            return false;
        }

        ulong* words = PoolWords(shard, pool, epoch, create: true); // another pool: one out-of-line radix walk
        if (words == null)
        {
            return false;
        }

        System.Diagnostics.Debug.Assert(domain <= 2 && size - 1 < SmallObjectAllocator.SmallRequestThreshold);
        int cls = (int)((size - 1) >> Allocators.SmallObject.SizeClasses.AlignmentShift);
        StoreDenseWord(shard, epoch, words + SmallObjectAllocator.IndexInPool(block, pool, cls), domain, traceback, cls, (long)size);
        return true;
    }

    /// <summary>
    /// Takes out the trace of <paramref name="block"/>, which <see cref="SmallObjectAllocator.PoolClassIfInPool"/> has
    /// placed in a pool of the small-object allocator right below, of class <paramref name="poolClass"/>, on the
    /// domain's fast path: its dense word when that holds this epoch's trace of <paramref name="domain"/>; else, out of
    /// line, the word of its address or a stripe slot.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void RemovePooled(ThreadShard shard, uint domain, void* block, int poolClass)
    {
        nuint pool = (nuint)block & ~(nuint)(Allocators.SmallObject.SizeClasses.PoolSize - 1);
        TraceEpoch epoch = _epoch;
        ulong* words = PoolWords(shard, pool, epoch, create: false); // null above 2^47, where no pool has dense slots
        if (words != null && SmallObjectAllocator.TryIndexInOwnPool(block, pool, poolClass, out uint index))
        {
            ulong* slot = words + index;
            ulong code = Volatile.Read(ref *slot);
            if (IsOf(epoch, code) && DomainOf(code) == domain)
            {
                Volatile.Write(ref *slot, 0); // the block's owner is the only writer of this epoch's word (see RemoveFromShadow)
                AccountRemovedInEpoch(shard, SizeOf(code, dense: true));
                return;
            }
        }

        RemoveByAddress(shard, domain, (nuint)block);
    }
}
