/*
 * counting_ext.c - a native extension of RuntimeMem, written against runtime_mem.h only.
 *
 * It keeps the function table the host hands it, allocates through the runtime's domains, installs a counting hook
 * (PEP 445 use case 3, from C) over any domain, and can install an allocator of its own written in C.
 *
 * Build: gcc -shared -fPIC -O2 -I<Runtime.Memory/native> -o libcounting_ext.so counting_ext.c
 */
#include <malloc.h>   /* malloc_usable_size (glibc) */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include "runtime_mem.h"

static const rtmem_api *api;

RTMEM_EXPORT int rtmem_extension_init(const rtmem_api *table)
{
    if (table == NULL || table->abi_version != RTMEM_ABI_VERSION || table->size < sizeof(rtmem_api))
        return 1; /* a runtime this extension was not built for */
    api = table;
    return 0;
}

/* The sizes this file was compiled with, so the host can check that C and C# agree on the ABI's layout. */
RTMEM_EXPORT size_t ext_sizeof(int which)
{
    switch (which) {
    case 0: return sizeof(rtmem_api);
    case 1: return sizeof(rtmem_allocator);
    case 2: return sizeof(rtmem_arena_allocator);
    case 3: return offsetof(rtmem_api, live_bytes);
    case 4: return offsetof(rtmem_allocator, free);
    case 5: return offsetof(rtmem_api, trace_untrack);
    default: return 0;
    }
}

/* ---- a counting hook ------------------------------------------------------------------------------------------ */

typedef struct counting_hook {
    rtmem_allocator previous;            /* what the hook wraps: filled by install_hook before any call */
    rtmem_allocator self;                /* the struct handed to install_hook (to remove it later) */
    atomic_llong mallocs, callocs, reallocs, frees;
} counting_hook;

static counting_hook hooks[3];

static void *count_malloc(void *ctx, size_t size)
{
    counting_hook *h = ctx;
    atomic_fetch_add(&h->mallocs, 1);
    return h->previous.malloc(h->previous.ctx, size);
}

static void *count_calloc(void *ctx, size_t nelem, size_t elsize)
{
    counting_hook *h = ctx;
    atomic_fetch_add(&h->callocs, 1);
    return h->previous.calloc(h->previous.ctx, nelem, elsize);
}

static void *count_realloc(void *ctx, void *ptr, size_t new_size)
{
    counting_hook *h = ctx;
    atomic_fetch_add(&h->reallocs, 1);
    return h->previous.realloc(h->previous.ctx, ptr, new_size);
}

static void count_free(void *ctx, void *ptr)
{
    counting_hook *h = ctx;
    atomic_fetch_add(&h->frees, 1);
    h->previous.free(h->previous.ctx, ptr);
}

/* Installs the counting hook on a domain; returns an RTMEM_ status. */
RTMEM_EXPORT int ext_install_counting_hook(int domain)
{
    if (domain < 0 || domain > 2)
        return RTMEM_EINVAL;
    counting_hook *h = &hooks[domain];
    atomic_store(&h->mallocs, 0);
    atomic_store(&h->callocs, 0);
    atomic_store(&h->reallocs, 0);
    atomic_store(&h->frees, 0);
    h->self = (rtmem_allocator){ h, count_malloc, count_calloc, count_realloc, count_free };
    return api->install_hook(api->runtime, domain, &h->self, &h->previous);
}

RTMEM_EXPORT int ext_remove_counting_hook(int domain)
{
    if (domain < 0 || domain > 2)
        return RTMEM_EINVAL;
    return api->remove_hook(api->runtime, domain, &hooks[domain].self);
}

/* Copies the hook's counts (mallocs, callocs, reallocs, frees) of a domain into out[4]. */
RTMEM_EXPORT void ext_counts(int domain, int64_t *out)
{
    counting_hook *h = &hooks[domain];
    out[0] = atomic_load(&h->mallocs);
    out[1] = atomic_load(&h->callocs);
    out[2] = atomic_load(&h->reallocs);
    out[3] = atomic_load(&h->frees);
}

/* ---- work through the domains ------------------------------------------------------------------------------------ */

/*
 * Allocates n blocks of 0..1000 bytes in a domain through the table, fills them, reallocates every other one,
 * checks the contents, and frees everything. Returns the number of problems (NULL returns, misaligned blocks, lost
 * bytes): 0 when all is well.
 */
RTMEM_EXPORT int ext_work(int domain, int n)
{
    int problems = 0;
    unsigned char **blocks = calloc((size_t)n, sizeof *blocks);
    size_t *sizes = calloc((size_t)n, sizeof *sizes);
    if (blocks == NULL || sizes == NULL)
        return -1;
    for (int i = 0; i < n; i++) {
        sizes[i] = (size_t)((i * 37) % 1001);
        blocks[i] = i % 3 == 0 ? api->calloc(api->runtime, domain, 1, sizes[i]) : api->malloc(api->runtime, domain, sizes[i]);
        if (blocks[i] == NULL || ((uintptr_t)blocks[i] & 15) != 0) { problems++; continue; }
        memset(blocks[i], (unsigned char)i, sizes[i]);
    }
    for (int i = 0; i < n; i += 2) {
        if (blocks[i] == NULL) continue;
        unsigned char *grown = api->realloc(api->runtime, domain, blocks[i], sizes[i] * 2 + 1);
        if (grown == NULL) { problems++; continue; }
        blocks[i] = grown;
    }
    for (int i = 0; i < n; i++) {
        if (blocks[i] == NULL) continue;
        for (size_t b = 0; b < sizes[i]; b++)
            if (blocks[i][b] != (unsigned char)i) { problems++; break; }
        api->free(api->runtime, domain, blocks[i]);
    }
    free(blocks);
    free(sizes);
    return problems;
}

/* get_allocator, set_allocator with the same struct, get_allocator again: 0 when both gets are identical. */
RTMEM_EXPORT int ext_round_trip(int domain)
{
    rtmem_allocator first, second;
    if (api->get_allocator(api->runtime, domain, &first) != RTMEM_OK) return -1;
    if (api->set_allocator(api->runtime, domain, &first) != RTMEM_OK) return -2;
    if (api->get_allocator(api->runtime, domain, &second) != RTMEM_OK) return -3;
    return memcmp(&first, &second, sizeof first) == 0 ? 0 : 1;
}

/* ---- an allocator written in C ---------------------------------------------------------------------------------- */

static atomic_llong c_calls;

static void *c_malloc(void *ctx, size_t size) { (void)ctx; atomic_fetch_add(&c_calls, 1); void *p = NULL; return posix_memalign(&p, 16, size ? size : 1) == 0 ? p : NULL; }
static void *c_calloc(void *ctx, size_t n, size_t s) { void *p = c_malloc(ctx, n * s); if (p) memset(p, 0, n * s); return p; }
static void *c_realloc(void *ctx, void *ptr, size_t size)
{
    /* keeps 16-byte alignment, which plain realloc does not promise */
    (void)ctx; atomic_fetch_add(&c_calls, 1);
    void *p = NULL;
    if (posix_memalign(&p, 16, size ? size : 1) != 0) return NULL;
    if (ptr) { size_t old = malloc_usable_size(ptr); memcpy(p, ptr, old < size ? old : size); free(ptr); }
    return p;
}
static void c_free(void *ctx, void *ptr) { (void)ctx; atomic_fetch_add(&c_calls, 1); free(ptr); }

static const rtmem_allocator c_allocator = { NULL, c_malloc, c_calloc, c_realloc, c_free };

/* Makes the C allocator the base allocator of a domain (refused with RTMEM_EBUSY while it has live blocks). */
RTMEM_EXPORT int ext_install_c_allocator(int domain)
{
    return api->set_allocator(api->runtime, domain, &c_allocator);
}

/*
 * Calls the domain's current allocator directly, as a native caller holding its struct does. Returns 1 when that
 * struct is this extension's own C allocator (so the calls ran without entering .NET) and a malloc/free pair worked.
 */
RTMEM_EXPORT int ext_direct_call_is_native(int domain)
{
    rtmem_allocator current;
    if (api->get_allocator(api->runtime, domain, &current) != RTMEM_OK) return -1;
    if (current.malloc != c_malloc || current.free != c_free) return 0;
    void *p = current.malloc(current.ctx, 64);
    if (p == NULL) return -2;
    current.free(current.ctx, p);
    return 1;
}

/* Calls made to the C allocator so far. */
RTMEM_EXPORT int64_t ext_c_allocator_calls(void) { return atomic_load(&c_calls); }

/* ---- tracing memory the runtime did not allocate (PyTraceMalloc_Track) --------------------------------------- */

/* A buffer from the C library, traced in trace domain 42 while the runtime traces; returns the trace_track status. */
RTMEM_EXPORT int ext_track_buffer(size_t size, void **out)
{
    if (api->size < offsetof(rtmem_api, trace_untrack) + sizeof(api->trace_untrack))
        return RTMEM_ENOTSUP; /* a runtime from before tracing */
    *out = malloc(size);
    if (*out == NULL)
        return RTMEM_ENOMEM;
    return api->trace_track(api->runtime, 42, (uintptr_t)*out, size);
}

RTMEM_EXPORT int ext_untrack_buffer(void *buffer)
{
    int status = api->trace_untrack(api->runtime, 42, (uintptr_t)buffer);
    free(buffer);
    return status;
}
