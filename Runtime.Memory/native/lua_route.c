/*
 * lua_route.c - the native fast path of the Lua route (Runtime.Memory.Extensions.LuaRouting): the state's lua_Alloc
 * serves blocks of up to 512 bytes from a per-thread cache of the domain's own blocks, so that most of Lua's
 * allocations and frees never enter .NET (each entry costs a reverse P/Invoke transition, more than glibc's whole
 * malloc; the figures are in docs/BENCHMARKS.md).
 *
 * WHAT GOES WHERE
 *
 *   ptr == NULL, nsize <= 512        pop the class's cache (refill it from the domain in one managed call when empty)
 *   nsize == 0, osize <= 512         push onto the class's cache (drain half of it to the domain when it is full)
 *   realloc, both sizes <= 512       the same block when the class is the same, else pop + copy + push
 *   anything else                    the managed lua_Alloc (LuaRouting.LuaAlloc), which does everything itself
 *
 *   The cache is used only while the managed side says so (route->fast): the domain runs the small-object allocator's
 *   plain pipeline (no tracing, no debug hooks, no user hook), and the library's libruntime_mem.so is present. When a
 *   tracer or a hook is installed the flag drops and every call takes the managed path, so diagnostics see every block
 *   and every call site as before.
 *
 *   On a domain whose chain is the system allocator or mimalloc alone (RTMEM_LUA_HEADERS), there is no cache: each
 *   call is that allocator's own malloc/realloc/free with the 16-byte header the managed allocator writes
 *   ([ size | mark ], Allocators/SizeHeader.cs), and the same accounting, without entering .NET.
 *
 * ACCOUNTING (the same as the managed path's, in the same memory)
 *
 *   Each call counts what the managed path would: in the tag's account (the sizes Lua asked for) and in the domain's
 *   (the class sizes the small-object allocator accounts), in this thread's ThreadContext (rtmem_counters, field for
 *   field Accounting/DomainCounters.cs), written only by this thread; the two shared trackers (rtmem_tracker, field for
 *   field PeakTracker) are read with relaxed loads. Growth that would publish (pending >= publish_at: 64 KiB, or every
 *   growth under an exact tag budget) or that passes a gate (a new peak, a budget, an open refusal episode) is not done
 *   here: the call takes the managed path, whose accounting does it. Frees publish here when the pending bytes fall to
 *   -64 KiB (one atomic add, as Accounting/MemoryAccounting.cs's PublishShrink).
 *   Blocks waiting in a cache are counted nowhere: they move between the cache and the small-object allocator
 *   uncounted (the refill and drain callbacks), so the domain's and the tag's figures are those of the blocks Lua
 *   holds, exactly as without the cache. A cache holds at most RTMEM_LUA_CACHE_MAX blocks per class; they go back on
 *   LuaRouting.Close (the calling thread's), Drain and Dispose (every thread's).
 *
 * THREADS AND LIFETIME
 *
 *   A cache belongs to one thread and one route; the thread finds it through one thread-local (the route's id, then
 *   the pointer), so a cache is never dereferenced after its route is gone: ids are never reused. Every cache is also on
 *   its route's list (under the route's mutex), so rtmem_lua_route_destroy gives every cached block back, whichever
 *   thread filled it (the route may be destroyed only when no state uses it any more). Nothing here runs at thread
 *   exit: a cache of an ended thread waits on the list until the route is destroyed.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define RTMEM_LUA_EXPORT __attribute__((visibility("default")))

enum
{
    RTMEM_LUA_MANAGED = 0,           /* every call through the managed lua_Alloc */
    RTMEM_LUA_POOLS = 1,             /* the small-object allocator, through the per-thread cache */
    RTMEM_LUA_HEADERS = 2,           /* a C allocator with the 16-byte size header (the system allocator, mimalloc) */
    RTMEM_LUA_HEADER_SIZE = 16,
    RTMEM_LUA_CLASSES = 32,          /* 16-byte classes up to 512 bytes (SmallObject/SizeClasses.cs) */
    RTMEM_LUA_MAX_SMALL = 512,
    RTMEM_LUA_CACHE_MAX = 64,        /* blocks a class's cache holds before it drains half */
    RTMEM_LUA_REFILL_BYTES = 4096,   /* a refill asks for about this many bytes, 4 to 32 blocks */
};

#define RTMEM_PUBLISH_THRESHOLD (64 * 1024)
#define RTMEM_BUDGET_NONE INT64_MAX

typedef struct rtmem_counters /* Accounting/DomainCounters.cs */
{
    int64_t allocations, frees, reallocations, failures, limit_refusals, bytes_allocated, bytes_freed, pending_live;
} rtmem_counters;

typedef struct rtmem_tracker /* Accounting/DomainCounters.cs, PeakTracker */
{
    int64_t published, peak, gate, limit;
    int32_t episode_open, pad;
    int64_t publish_at;
} rtmem_tracker;

typedef struct rtmem_lua_cache rtmem_lua_cache;

typedef struct rtmem_lua_route /* Extensions/Lua/LuaRouting.cs, NativeRoute: field for field */
{
    void *handle;                 /* the managed route's GCHandle: the first field, also for the managed lua_Alloc */
    volatile int32_t fast;        /* which path: RTMEM_LUA_MANAGED, RTMEM_LUA_POOLS or RTMEM_LUA_HEADERS */
    int32_t pad;
    uint64_t id;                  /* never reused */
    rtmem_tracker *tag_tracker;   /* the tag's tracker */
    rtmem_tracker *domain_tracker;/* the domain's tracker */
    int32_t tag_account;          /* account indices in a thread's context */
    int32_t domain_account;
    uintptr_t pool_mask;          /* ~(pool size - 1): a block's pool header is at its address masked */
    int32_t block_size_offset;    /* of Pool.BlockSize in the pool header (Allocators/SmallObject/Pool.cs) */
    int32_t pad2;
    void *(*h_malloc)(size_t);            /* RTMEM_LUA_HEADERS: the C allocator under the domain (glibc's or mimalloc's) */
    void *(*h_realloc)(void *, size_t);
    void (*h_free)(void *);
    uintptr_t h_magic;                    /* the allocator's header mark (Allocators/SizeHeader.cs) */
    void *(*slow)(void *ud, void *ptr, size_t osize, size_t nsize);         /* the managed lua_Alloc */
    int32_t (*refill)(void *ud, int32_t size, int32_t count, void **out);   /* up to count blocks of size; how many */
    void (*drain)(void *ud, void **blocks, int32_t count);                  /* gives blocks back to the domain */
    rtmem_counters *(*bind)(void *ud);                                      /* this thread's accounts (its context's) */
    pthread_mutex_t lock;
    rtmem_lua_cache *caches;
} rtmem_lua_route;

struct rtmem_lua_cache
{
    rtmem_lua_cache *next;        /* on the route's list */
    rtmem_lua_route *route;
    pthread_t thread;
    rtmem_counters *tag;          /* this thread's counters of the tag (in its ThreadContext) */
    rtmem_counters *dom;          /* and of the domain */
    void *head[RTMEM_LUA_CLASSES];
    int32_t count[RTMEM_LUA_CLASSES];
};

/* The route this thread used last and its cache, in one thread-local (one TLS lookup per call in a dlopen'ed library). */
static __thread struct
{
    uint64_t route_id;
    rtmem_lua_cache *cache;
} t_last;

static inline int class_of(size_t size) { return (int)((size - 1) >> 4); }

/* ---- accounting: the fast cases of MemoryAccounting.Grow / Shrink; 0 sends the call to the managed path ---- */

static inline int fits(rtmem_counters *c, rtmem_tracker *t, int64_t bytes)
{
    int64_t pending = c->pending_live + bytes;
    return pending < __atomic_load_n(&t->publish_at, __ATOMIC_RELAXED)
        && __atomic_load_n(&t->published, __ATOMIC_RELAXED) + pending <= __atomic_load_n(&t->gate, __ATOMIC_RELAXED);
}

/* Growth of both accounts, or of neither (0: the managed path does it). */
static inline int grow(rtmem_lua_cache *c, int64_t tag_bytes, int64_t domain_bytes)
{
    if (!fits(c->tag, c->route->tag_tracker, tag_bytes) || !fits(c->dom, c->route->domain_tracker, domain_bytes))
        return 0;
    c->tag->pending_live += tag_bytes;
    c->dom->pending_live += domain_bytes;
    return 1;
}

static inline void shrink(rtmem_counters *c, rtmem_tracker *t, int64_t bytes)
{
    int64_t pending = c->pending_live - bytes;
    if (pending <= -RTMEM_PUBLISH_THRESHOLD)
    {
        c->pending_live = 0; /* first: a reader may see the frees not yet made, never made twice */
        __atomic_add_fetch(&t->published, pending, __ATOMIC_SEQ_CST);
        return;
    }
    c->pending_live = pending;
}

/* A resize done here: the growth was already added to the pending bytes by grow(); the rest is counted. */
static inline void count_resize(rtmem_lua_cache *c, int64_t change, int64_t domain_change)
{
    c->tag->reallocations++;
    c->dom->reallocations++;
    if (change >= 0)
        c->tag->bytes_allocated += change;
    else
    {
        c->tag->bytes_freed -= change;
        shrink(c->tag, c->route->tag_tracker, -change);
    }
    if (domain_change >= 0)
        c->dom->bytes_allocated += domain_change;
    else
    {
        c->dom->bytes_freed -= domain_change;
        shrink(c->dom, c->route->domain_tracker, -domain_change);
    }
}

static inline int64_t class_size(size_t size) { return (int64_t)((size + 15) & ~(size_t)15); }

/* The size of the pool block ptr is, from its pool's header: what the domain accounts for it. A block the managed
   path resized in place may be of a larger class than Lua's size says (SmallObjectAllocator.ReallocFrom keeps a block
   that shrinks by less than a quarter). */
static inline int64_t block_size(const rtmem_lua_route *r, const void *ptr)
{
    return *(const int32_t *)(((uintptr_t)ptr & r->pool_mask) + (uintptr_t)r->block_size_offset);
}

/* ---- the cache ---- */

static rtmem_lua_cache *bind_cache(rtmem_lua_route *r)
{
    pthread_t self = pthread_self();
    rtmem_lua_cache *c;
    pthread_mutex_lock(&r->lock);
    for (c = r->caches; c != NULL; c = c->next)
        if (pthread_equal(c->thread, self))
            break;
    pthread_mutex_unlock(&r->lock);
    if (c == NULL)
    {
        rtmem_counters *accounts = r->bind(r); /* managed: this thread's context */
        if (accounts == NULL)
            return NULL;
        c = calloc(1, sizeof *c);
        if (c == NULL)
            return NULL;
        c->route = r;
        c->thread = self;
        c->tag = accounts + r->tag_account;
        c->dom = accounts + r->domain_account;
        pthread_mutex_lock(&r->lock);
        c->next = r->caches;
        r->caches = c;
        pthread_mutex_unlock(&r->lock);
    }
    t_last.route_id = r->id;
    t_last.cache = c;
    return c;
}

static inline rtmem_lua_cache *cache_of(rtmem_lua_route *r)
{
    return t_last.route_id == r->id ? t_last.cache : bind_cache(r);
}

static __attribute__((noinline)) void *refill(rtmem_lua_cache *c, int cls)
{
    void *blocks[32];
    int32_t size = (cls + 1) * 16;
    int32_t want = RTMEM_LUA_REFILL_BYTES / size;
    want = want < 4 ? 4 : want > 32 ? 32 : want;
    int32_t got = c->route->refill(c->route, size, want, blocks);
    if (got <= 0)
        return NULL;
    for (int32_t i = 1; i < got; i++)
    {
        *(void **)blocks[i] = c->head[cls];
        c->head[cls] = blocks[i];
    }
    c->count[cls] += got - 1;
    return blocks[0];
}

static inline void *pop(rtmem_lua_cache *c, int cls)
{
    void *block = c->head[cls];
    if (block == NULL)
        return refill(c, cls);
    c->head[cls] = *(void **)block;
    c->count[cls]--;
    return block;
}

static __attribute__((noinline)) void drain_half(rtmem_lua_cache *c, int cls)
{
    void *blocks[RTMEM_LUA_CACHE_MAX / 2];
    int32_t n = 0;
    while (n < RTMEM_LUA_CACHE_MAX / 2 && c->head[cls] != NULL)
    {
        blocks[n++] = c->head[cls];
        c->head[cls] = *(void **)c->head[cls];
    }
    c->count[cls] -= n;
    c->route->drain(c->route, blocks, n);
}

static inline void push(rtmem_lua_cache *c, int cls, void *block)
{
    *(void **)block = c->head[cls];
    c->head[cls] = block;
    if (++c->count[cls] > RTMEM_LUA_CACHE_MAX)
        drain_half(c, cls);
}

/* ---- header blocks (RTMEM_LUA_HEADERS) ---- */

static __attribute__((noinline)) void *header_alloc(rtmem_lua_route *r, void *ptr, size_t osize, size_t nsize)
{
    rtmem_lua_cache *c = cache_of(r);
    if (c == NULL || nsize > (SIZE_MAX >> 1) - RTMEM_LUA_HEADER_SIZE)
        return r->slow(r, ptr, osize, nsize);
    if (nsize == 0)
    {
        if (ptr == NULL)
            return NULL;
        size_t *header = (size_t *)((char *)ptr - RTMEM_LUA_HEADER_SIZE);
        int64_t size = (int64_t)header[0];
        r->h_free(header);
        c->tag->frees++;
        c->tag->bytes_freed += (int64_t)osize;
        shrink(c->tag, r->tag_tracker, (int64_t)osize);
        c->dom->frees++;
        c->dom->bytes_freed += size;
        shrink(c->dom, r->domain_tracker, size);
        return NULL;
    }

    if (ptr == NULL)
    {
        if (!grow(c, (int64_t)nsize, (int64_t)nsize))
            return r->slow(r, ptr, osize, nsize);
        size_t *header = r->h_malloc(nsize + RTMEM_LUA_HEADER_SIZE);
        if (header == NULL)
        {
            c->tag->pending_live -= (int64_t)nsize;
            c->dom->pending_live -= (int64_t)nsize;
            return r->slow(r, ptr, osize, nsize); /* counts the failure, and reports it as the managed path does */
        }
        header[0] = nsize;
        header[1] = r->h_magic;
        c->tag->allocations++;
        c->tag->bytes_allocated += (int64_t)nsize;
        c->dom->allocations++;
        c->dom->bytes_allocated += (int64_t)nsize;
        return header + 2;
    }

    size_t *old = (size_t *)((char *)ptr - RTMEM_LUA_HEADER_SIZE);
    int64_t change = (int64_t)nsize - (int64_t)osize;
    int64_t domain_change = (int64_t)nsize - (int64_t)old[0];
    if (!grow(c, change > 0 ? change : 0, domain_change > 0 ? domain_change : 0))
        return r->slow(r, ptr, osize, nsize);
    size_t *header = r->h_realloc(old, nsize + RTMEM_LUA_HEADER_SIZE);
    if (header == NULL)
    {
        c->tag->pending_live -= change > 0 ? change : 0;
        c->dom->pending_live -= domain_change > 0 ? domain_change : 0;
        return r->slow(r, ptr, osize, nsize); /* the old block is intact */
    }
    header[0] = nsize;
    count_resize(c, change, domain_change);
    return header + 2;
}

/* ---- lua_Alloc ---- */

RTMEM_LUA_EXPORT void *rtmem_lua_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    rtmem_lua_route *r = ud;
    int32_t path = r->fast;
    if (path != RTMEM_LUA_POOLS)
        return path == RTMEM_LUA_HEADERS ? header_alloc(r, ptr, osize, nsize) : r->slow(ud, ptr, osize, nsize);
    if (nsize == 0)
    {
        if (ptr == NULL)
            return NULL;
        if (osize - 1 >= RTMEM_LUA_MAX_SMALL) /* osize 0 wraps around */
            return r->slow(ud, ptr, osize, nsize);
        rtmem_lua_cache *c = cache_of(r);
        if (c == NULL)
            return r->slow(ud, ptr, osize, nsize);
        int64_t bs = block_size(r, ptr);
        push(c, (int)(bs >> 4) - 1, ptr);
        c->tag->frees++;
        c->tag->bytes_freed += (int64_t)osize;
        shrink(c->tag, r->tag_tracker, (int64_t)osize);
        c->dom->frees++;
        c->dom->bytes_freed += bs;
        shrink(c->dom, r->domain_tracker, bs);
        return NULL;
    }

    if (ptr == NULL) /* osize is an object kind, not a size */
    {
        if (nsize > RTMEM_LUA_MAX_SMALL)
            return r->slow(ud, ptr, osize, nsize);
        rtmem_lua_cache *c = cache_of(r);
        if (c == NULL || !grow(c, (int64_t)nsize, class_size(nsize)))
            return r->slow(ud, ptr, osize, nsize);
        void *block = pop(c, class_of(nsize));
        if (block == NULL)
        {
            c->tag->pending_live -= (int64_t)nsize; /* undo: the managed path counts its own attempt */
            c->dom->pending_live -= class_size(nsize);
            return r->slow(ud, ptr, osize, nsize);
        }
        c->tag->allocations++;
        c->tag->bytes_allocated += (int64_t)nsize;
        c->dom->allocations++;
        c->dom->bytes_allocated += class_size(nsize);
        return block;
    }

    if (osize - 1 >= RTMEM_LUA_MAX_SMALL || nsize > RTMEM_LUA_MAX_SMALL)
        return r->slow(ud, ptr, osize, nsize);
    rtmem_lua_cache *c = cache_of(r);
    if (c == NULL)
        return r->slow(ud, ptr, osize, nsize);
    /* SmallObjectAllocator.ReallocFrom's rule: a block stays when the new size fits its class and wastes little. */
    int64_t change = (int64_t)nsize - (int64_t)osize;
    int64_t bs = block_size(r, ptr);
    int stays = (int64_t)nsize <= bs && ((int64_t)nsize * 4 > bs * 3 || class_size(nsize) == bs);
    int64_t domain_change = stays ? 0 : class_size(nsize) - bs;
    if (!grow(c, change > 0 ? change : 0, domain_change > 0 ? domain_change : 0))
        return r->slow(ud, ptr, osize, nsize);
    void *block = ptr;
    if (!stays)
    {
        block = pop(c, class_of(nsize));
        if (block == NULL)
        {
            c->tag->pending_live -= change > 0 ? change : 0;
            c->dom->pending_live -= domain_change > 0 ? domain_change : 0;
            return r->slow(ud, ptr, osize, nsize);
        }
        memcpy(block, ptr, osize < nsize ? osize : nsize);
        push(c, (int)(bs >> 4) - 1, ptr);
    }
    count_resize(c, change, domain_change);
    return block;
}

/* ---- the route's lifetime (called by LuaRouting) ---- */

/* Gives back every block the route's caches hold, whichever thread filled them. No state may use the route meanwhile. */
RTMEM_LUA_EXPORT void rtmem_lua_route_drain(rtmem_lua_route *r)
{
    pthread_mutex_lock(&r->lock);
    for (rtmem_lua_cache *c = r->caches; c != NULL; c = c->next)
    {
        for (int cls = 0; cls < RTMEM_LUA_CLASSES; cls++)
        {
            while (c->head[cls] != NULL)
                drain_half(c, cls);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

/* Gives back the blocks the calling thread's cache of the route holds (after lua_close on this thread). */
RTMEM_LUA_EXPORT void rtmem_lua_route_drain_mine(rtmem_lua_route *r)
{
    pthread_t self = pthread_self();
    pthread_mutex_lock(&r->lock);
    for (rtmem_lua_cache *c = r->caches; c != NULL; c = c->next)
    {
        if (!pthread_equal(c->thread, self))
            continue;
        for (int cls = 0; cls < RTMEM_LUA_CLASSES; cls++)
        {
            while (c->head[cls] != NULL)
                drain_half(c, cls);
        }
    }
    pthread_mutex_unlock(&r->lock);
}

RTMEM_LUA_EXPORT int rtmem_lua_route_init(rtmem_lua_route *r)
{
    r->caches = NULL;
    return pthread_mutex_init(&r->lock, NULL);
}

/* Drains and frees every cache; the route's memory is the managed side's to free afterwards. */
RTMEM_LUA_EXPORT void rtmem_lua_route_destroy(rtmem_lua_route *r)
{
    rtmem_lua_route_drain(r);
    rtmem_lua_cache *c = r->caches;
    while (c != NULL)
    {
        rtmem_lua_cache *next = c->next;
        free(c);
        c = next;
    }
    r->caches = NULL;
    pthread_mutex_destroy(&r->lock);
}

/* The size of rtmem_lua_route here, which the managed side allocates. */
RTMEM_LUA_EXPORT size_t rtmem_lua_route_size(void) { return sizeof(rtmem_lua_route); }

/* Offsets and sizes the managed side checks against its own declarations before it uses this library (a library built
   from other sources would corrupt memory): -1 for an unknown question. */
RTMEM_LUA_EXPORT int64_t rtmem_lua_route_layout(int32_t what)
{
    switch (what)
    {
    case 0: return (int64_t)offsetof(rtmem_lua_route, fast);
    case 1: return (int64_t)offsetof(rtmem_lua_route, tag_tracker);
    case 2: return (int64_t)offsetof(rtmem_lua_route, slow);
    case 3: return (int64_t)offsetof(rtmem_lua_route, bind);
    case 4: return (int64_t)offsetof(rtmem_lua_route, pool_mask);
    case 5: return (int64_t)offsetof(rtmem_lua_route, h_magic);
    case 6: return (int64_t)sizeof(rtmem_counters);
    case 7: return (int64_t)offsetof(rtmem_counters, pending_live);
    case 8: return (int64_t)offsetof(rtmem_tracker, gate);
    case 9: return (int64_t)offsetof(rtmem_tracker, publish_at);
    default: return -1;
    }
}
