
namespace Runtime.Memory.Allocators.SmallObject;

// The walker that checks every arena, pool and heap list against the invariants written next to the structures
// (SizeClasses, Pool, Heap, Arena). Used by the tests after every stress and model run; O(arenas × pools + blocks).
public sealed unsafe partial class SmallObjectAllocator
{
    /// <summary>
    /// Walks every arena, pool, free list and heap list and returns a description of each broken invariant (empty
    /// when all hold). Call it only while no thread allocates or frees through this allocator: it reads the owner
    /// threads' fields without their cooperation.
    /// </summary>
    internal IReadOnlyList<string> CheckInvariants()
    {
        var problems = new List<string>();
        lock (_arenaLock)
        {
            foreach (Arena? arena in _arenas)
            {
                if (arena is not null)
                {
                    CheckArena(arena, problems);
                }
            }

            foreach (ThreadHeap registration in _heaps)
            {
                Heap* heap = registration.Heap;
                for (int cls = 0; cls < SizeClasses.Count; cls++)
                {
                    CheckList((Pool*)heap->Available[cls], heap, PoolList.Available, cls, problems);
                    CheckList((Pool*)heap->Full[cls], heap, PoolList.Full, cls, problems);
                }
            }

            for (int cls = 0; cls < SizeClasses.Count; cls++)
            {
                CheckList((Pool*)_abandoned[cls], null, PoolList.Abandoned, cls, problems);
            }
        }

        return problems;
    }

    private static void CheckArena(Arena arena, List<string> problems)
    {
        int free = 0;
        for (Pool* p = arena.FreePools; p != null && free <= arena.PoolCount; p = p->Next)
        {
            free++;
            if (p->List != PoolList.None || p->Owner != null)
            {
                problems.Add($"arena {arena.Index}: free pool {p->PoolIndex} is on a list or owned");
            }
        }

        int untouched = arena.PoolCount - arena.CarvedCount;
        if (free + untouched != arena.FreeCount)
        {
            problems.Add($"arena {arena.Index}: FreeCount {arena.FreeCount}, but {free} returned + {untouched} untouched pools");
        }

        for (int i = 0; i < arena.CarvedCount; i++)
        {
            Pool* pool = arena.PoolAt(i);
            if (pool->List != PoolList.None)
            {
                CheckPool(pool, arena, problems);
            }
        }
    }

    private static void CheckPool(Pool* pool, Arena arena, List<string> problems)
    {
        string where = $"arena {arena.Index} pool {pool->PoolIndex} (class {pool->ClassIndex})";
        int size = pool->BlockSize;
        if (pool->ClassIndex is < 0 or >= SizeClasses.Count || size != SizeClasses.SizeOf(pool->ClassIndex)
            || pool->Capacity != SizeClasses.BlocksPerPool(pool->ClassIndex) || pool->ArenaIndex != arena.Index)
        {
            problems.Add($"{where}: header does not match its class or arena");
            return;
        }

        byte* first = (byte*)pool + SizeClasses.PoolOverhead;
        if (pool->Virgin < first || pool->Virgin > pool->Limit || (pool->Virgin - first) % size != 0)
        {
            problems.Add($"{where}: virgin pointer outside the pool or misaligned");
            return;
        }

        int localFree = 0;
        for (byte* b = pool->LocalFree; b != null; b = *(byte**)b)
        {
            if (b < first || b >= pool->Virgin || (b - first) % size != 0 || ++localFree > pool->Capacity)
            {
                problems.Add($"{where}: local free list holds a block outside the used part of the pool, misaligned, or cycles");
                return;
            }
        }

        int virgin = (int)((pool->Limit - pool->Virgin) / size);
        if (pool->Used != pool->Capacity - localFree - virgin)
        {
            problems.Add($"{where}: Used {pool->Used}, but capacity {pool->Capacity} - {localFree} free - {virgin} virgin");
        }

        long pendingRemote = Volatile.Read(ref pool->ThreadFreeCount);
        if (pendingRemote < 0 || pendingRemote > pool->Used)
        {
            problems.Add($"{where}: {pendingRemote} remote frees pending with {pool->Used} blocks out");
        }
    }

    private static void CheckList(Pool* head, Heap* owner, byte list, int cls, List<string> problems)
    {
        Pool* previous = null;
        int count = 0;
        for (Pool* p = head; p != null; p = p->Next)
        {
            if (p->Owner != owner || p->List != list || p->ClassIndex != cls || p->Prev != previous || ++count > 1_000_000)
            {
                problems.Add($"list {list} of class {cls}: pool {p->PoolIndex} of arena {p->ArenaIndex} has the wrong owner, list, class or back link");
                return;
            }

            previous = p;
        }
    }
}
