/*
 * openssl_route.c - the part of the OpenSSL route (Runtime.Memory.Extensions.OpenSslRouting) that must be C.
 * Built with Runtime.Memory into libruntime_mem.so; no OpenSSL headers are needed.
 *
 * WHY C
 *
 *   OpenSSL has one allocator per process (CRYPTO_set_mem_functions) and calls its free function where .NET code
 *   cannot run: from pthread key destructors while a thread exits, after the .NET runtime has torn down its own
 *   per-thread state (dotnet/runtime#110442, a crash under EVP_RAND_CTX_free), and from OPENSSL_cleanup at exit().
 *   So the three functions OpenSSL is given live here:
 *
 *     malloc, realloc  call the managed side while the route is BOUND (OpenSSL allocates on live threads);
 *                      otherwise they use the C library's malloc/realloc and mark the block as theirs.
 *     free             never calls managed code. A runtime block is pushed onto a lock-free list that the managed
 *                      side takes back (before each of its allocations, and on Flush); a C library block goes
 *                      straight to free().
 *
 * BLOCK LAYOUT (shared with Extensions/LibraryRoute.cs; RTMEM_PREFIX bytes in front of what OpenSSL sees)
 *
 *     [ size (size_t) | word (uintptr_t) | pad to 16 ][ size bytes returned to OpenSSL ... ]
 *
 *     word = the route's check value           a live runtime block (never equal to the mark: see LibraryRoute.Check)
 *          = RTMEM_LIBC_MARK                   a live C library block
 *          = next block in the deferred list   a runtime block OpenSSL has freed, not yet taken back
 *
 * STATES (one route per process)
 *
 *     UNBOUND -> BINDING -> BOUND -> CLOSED  CLOSED is final: the runtime was disposed, or the process is exiting.
 *
 *   Outside BOUND, malloc and realloc take C library memory. In CLOSED a freed runtime block is left where it is (its
 *   memory stays valid: the block is live as far as the runtime knows) and counted as dropped.
 *   rtmem_openssl_close() waits until no other thread is inside a managed call or a push onto the list, so after it
 *   returns OpenSSL's calls never enter the managed side again and the list no longer grows; a close from inside a
 *   managed call (the runtime disposed by a hook) does not wait for itself.
 *
 * THREAD EXIT
 *
 *   A thread that allocates through the managed side registers a TLS destructor (__cxa_thread_atexit_impl). glibc
 *   runs TLS destructors before pthread key destructors, where OpenSSL cleans up, so by then the thread is marked as
 *   exiting and any malloc or realloc OpenSSL makes there takes C library memory instead of entering .NET.
 */
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(_WIN32)
#define RTMEM_SHIM_EXPORT __declspec(dllexport)
#else
#define RTMEM_SHIM_EXPORT __attribute__((visibility("default")))
#endif

#define RTMEM_PREFIX 16
#define RTMEM_LIBC_MARK ((uintptr_t)0xC1B0C1B0C1B0C1B6ull) /* low bits 110: no check value has them */

enum { ROUTE_UNBOUND = 0, ROUTE_BOUND = 1, ROUTE_CLOSED = 2, ROUTE_BINDING = 3 };

typedef void *(*managed_malloc_fn)(size_t size, const char *file, int line);
typedef void *(*managed_realloc_fn)(void *ptr, size_t size, const char *file, int line);

/* Read by the managed side through rtmem_openssl_state(); the C# mirror is OpenSslRouting.SharedState. */
typedef struct rtmem_openssl_state {
    _Atomic(uintptr_t) deferred;        /* head of the deferred list (a block's prefix address), 0 when empty */
    _Atomic(uint64_t) deferred_frees;   /* runtime blocks OpenSSL freed into the list, ever */
    _Atomic(uint64_t) libc_blocks;      /* allocations served by the C library (route not bound) */
    _Atomic(uint64_t) dropped_frees;    /* runtime blocks freed after CLOSED: left to the process's exit */
    _Atomic(int) state;                 /* ROUTE_* */
    _Atomic(int) inflight;              /* calls inside the managed side or pushing onto the list */
    managed_malloc_fn managed_malloc;   /* set once, before state becomes BOUND */
    managed_realloc_fn managed_realloc;
} rtmem_openssl_state;

typedef struct block_prefix {
    size_t size;
    _Atomic(uintptr_t) word;
} block_prefix;

_Static_assert(sizeof(block_prefix) <= RTMEM_PREFIX, "the prefix holds the size and one word");

static rtmem_openssl_state g_route;

static _Thread_local int t_depth;    /* this thread's calls counted in inflight */
static _Thread_local int t_exiting;  /* set by the TLS destructor: the thread is ending */
static _Thread_local int t_watched;  /* the TLS destructor is registered */

#if defined(__GLIBC__)
extern int __cxa_thread_atexit_impl(void (*dtor)(void *), void *obj, void *dso_symbol);
extern void *__dso_handle;
static void mark_exiting(void *unused) { (void)unused; t_exiting = 1; }
static void watch_thread_exit(void)
{
    if (!t_watched) {
        t_watched = 1;
        __cxa_thread_atexit_impl(mark_exiting, NULL, &__dso_handle);
    }
}
#else
static void watch_thread_exit(void) {}
#endif

static block_prefix *prefix_of(void *p) { return (block_prefix *)((char *)p - RTMEM_PREFIX); }

/* Counts this call in inflight if the route is bound (and, for managed calls, the thread is not ending); a
   successful enter must be paired with leave(). */
static int enter(int managed)
{
    if (managed && t_exiting)
        return 0;
    atomic_fetch_add(&g_route.inflight, 1);
    if (atomic_load(&g_route.state) == ROUTE_BOUND) {
        t_depth++;
        if (managed)
            watch_thread_exit();
        return 1;
    }
    atomic_fetch_sub(&g_route.inflight, 1);
    return 0;
}

static void leave(void)
{
    t_depth--;
    atomic_fetch_sub(&g_route.inflight, 1);
}

static void *libc_block(size_t size)
{
    if (size > SIZE_MAX - RTMEM_PREFIX)
        return NULL;
    block_prefix *h = malloc(size + RTMEM_PREFIX);
    if (h == NULL)
        return NULL;
    h->size = size;
    atomic_store_explicit(&h->word, RTMEM_LIBC_MARK, memory_order_relaxed);
    atomic_fetch_add_explicit(&g_route.libc_blocks, 1, memory_order_relaxed);
    return (char *)h + RTMEM_PREFIX;
}

RTMEM_SHIM_EXPORT void *rtmem_openssl_malloc(size_t size, const char *file, int line)
{
    if (enter(1)) {
        void *p = g_route.managed_malloc(size, file, line);
        leave();
        return p;
    }
    return libc_block(size);
}

RTMEM_SHIM_EXPORT void rtmem_openssl_free(void *ptr, const char *file, int line)
{
    (void)file;
    (void)line;
    if (ptr == NULL) /* CRYPTO_free forwards NULL */
        return;
    block_prefix *h = prefix_of(ptr);
    if (atomic_load_explicit(&h->word, memory_order_relaxed) == RTMEM_LIBC_MARK) {
        free(h);
        return;
    }
    if (!enter(0)) { /* only CLOSED can hold runtime blocks outside BOUND */
        atomic_fetch_add_explicit(&g_route.dropped_frees, 1, memory_order_relaxed);
        return;
    }
    /* Treiber push; the taker swaps the whole list out at once, so there is no ABA. Counted first, so that the
       count never lags behind what a taker can see. */
    atomic_fetch_add_explicit(&g_route.deferred_frees, 1, memory_order_relaxed);
    uintptr_t head = atomic_load_explicit(&g_route.deferred, memory_order_relaxed);
    do {
        atomic_store_explicit(&h->word, head, memory_order_relaxed);
    } while (!atomic_compare_exchange_weak_explicit(&g_route.deferred, &head, (uintptr_t)h,
                                                    memory_order_release, memory_order_relaxed));
    leave();
}

RTMEM_SHIM_EXPORT void *rtmem_openssl_realloc(void *ptr, size_t size, const char *file, int line)
{
    if (ptr == NULL)
        return rtmem_openssl_malloc(size, file, line);
    if (size == 0) { /* CRYPTO_realloc's own rule: free, and return NULL */
        rtmem_openssl_free(ptr, file, line);
        return NULL;
    }
    block_prefix *h = prefix_of(ptr);
    if (atomic_load_explicit(&h->word, memory_order_relaxed) == RTMEM_LIBC_MARK) {
        if (size > SIZE_MAX - RTMEM_PREFIX)
            return NULL;
        block_prefix *moved = realloc(h, size + RTMEM_PREFIX);
        if (moved == NULL)
            return NULL;
        moved->size = size;
        return (char *)moved + RTMEM_PREFIX;
    }
    if (enter(1)) {
        void *p = g_route.managed_realloc(ptr, size, file, line);
        leave();
        return p;
    }
    /* Not bound: the runtime block's contents move to C library memory; the block itself stays with the runtime. */
    void *moved = libc_block(size);
    if (moved == NULL)
        return NULL;
    memcpy(moved, ptr, h->size < size ? h->size : size);
    rtmem_openssl_free(ptr, file, line);
    return moved;
}

/* UNBOUND -> BOUND with the managed functions; 0 on success, -1 if the route was bound before (in this process). */
RTMEM_SHIM_EXPORT int rtmem_openssl_bind(managed_malloc_fn managed_malloc, managed_realloc_fn managed_realloc)
{
    int expected = ROUTE_UNBOUND;
    if (managed_malloc == NULL || managed_realloc == NULL
        || !atomic_compare_exchange_strong(&g_route.state, &expected, ROUTE_BINDING))
        return -1;
    g_route.managed_malloc = managed_malloc;
    g_route.managed_realloc = managed_realloc;
    atomic_store(&g_route.state, ROUTE_BOUND); /* publishes the pointers */
    return 0;
}

/* -> CLOSED, then waits until no other call is in flight (this thread's own are not waited for). Idempotent. */
RTMEM_SHIM_EXPORT void rtmem_openssl_close(void)
{
    atomic_store(&g_route.state, ROUTE_CLOSED);
    while (atomic_load(&g_route.inflight) > t_depth)
        sched_yield(); /* a call in flight finishes in microseconds */
}

RTMEM_SHIM_EXPORT rtmem_openssl_state *rtmem_openssl_state_get(void) { return &g_route; }

/* The shim's layout constants, checked by the managed side at load. */
RTMEM_SHIM_EXPORT int rtmem_openssl_layout(int which)
{
    switch (which) {
    case 0: return RTMEM_PREFIX;
    case 1: return (int)sizeof(rtmem_openssl_state);
    case 2: return (int)offsetof(rtmem_openssl_state, state);
    case 3: return (int)offsetof(rtmem_openssl_state, managed_malloc);
    default: return -1;
    }
}
