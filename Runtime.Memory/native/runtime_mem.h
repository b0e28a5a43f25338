/*
 * runtime_mem.h - the C ABI of RuntimeMem, the memory subsystem of a .NET-hosted interpreter runtime.
 *
 * RuntimeMem brings CPython's PEP 445 allocator design to .NET. A runtime has three allocator domains:
 *
 *   RTMEM_DOMAIN_RAW  memory for buffers and native libraries; callable from any thread
 *   RTMEM_DOMAIN_MEM  general-purpose interpreter memory
 *   RTMEM_DOMAIN_OBJ  interpreter objects
 *
 * Each domain has malloc / calloc / realloc / free with PEP 445's guarantees:
 *   - malloc(0) and calloc with a zero count or size return a distinct non-NULL block;
 *   - sizes above PTRDIFF_MAX, and callocs whose count * size overflows, return NULL;
 *   - realloc(NULL, n) is malloc(n); a failed realloc returns NULL and leaves the old block valid;
 *   - free(NULL) does nothing;
 *   - every block is 16-byte aligned;
 *   - a block must be freed (and reallocated) through the domain that allocated it.
 * Every function in this header may be called from any thread. None of them ever unwinds into your code: failures
 * are NULL returns or negative status codes.
 *
 * HOW AN EXTENSION RECEIVES THE RUNTIME
 *
 *   The host loads your shared library and calls the function you export:
 *
 *       RTMEM_EXPORT int rtmem_extension_init(const rtmem_api *api);
 *
 *   Check api->abi_version (equal to RTMEM_ABI_VERSION) and api->size (at least the size of the fields you use),
 *   keep the pointer, and return 0; any other value makes the host report that the extension failed to load. The
 *   table stays valid until the runtime is disposed; pass api->runtime as the first argument of every function.
 *   (From C#: Runtime.Memory.Interop.NativeExtension.Load(runtime, "libmyext.so").)
 *
 * ALLOCATING
 *
 *       void *p = api->malloc(api->runtime, RTMEM_DOMAIN_RAW, 4096);
 *       ...
 *       api->free(api->runtime, RTMEM_DOMAIN_RAW, p);
 *
 * ALLOCATORS AND HOOKS (PEP 445's PyMem_GetAllocator / PyMem_SetAllocator)
 *
 *   get_allocator fills an rtmem_allocator with the domain's current allocator. Calling its functions is calling the
 *   domain's allocator directly, without the domain's size checks or accounting: use it as the "previous" allocator
 *   of a hook, and prefer api->malloc etc. otherwise. Handing the same struct back to set_allocator restores exactly
 *   that allocator (a round trip loses nothing). set_allocator with a struct of your own makes it the domain's base
 *   allocator: refused with RTMEM_EBUSY while the domain has live blocks, because the new allocator could not free them.
 *
 *   To wrap the current allocator instead (tracing, counting, fault injection), use install_hook: it stores the
 *   allocator your hook wraps into *previous before any call can reach your hook, then puts your hook on top.
 *   install_hook is always allowed, even with live blocks and other threads allocating. Your hook must forward to
 *   previous (it must not change where blocks start or how big they are underneath), and must be thread-safe.
 *   remove_hook takes it out again and restores what was below it.
 *
 *   An allocator or hook written in C is called by native callers that hold its struct without entering .NET, and
 *   by managed callers (and api->malloc etc.) through its function pointers.
 *
 * ARENAS (PEP 445's PyObject_GetArenaAllocator / PyObject_SetArenaAllocator)
 *
 *   A domain that runs on the small-object allocator ("pymalloc") takes its 1 MiB arenas from an arena allocator:
 *   alloc(ctx, size) returns size bytes or NULL, free(ctx, ptr, size) receives the size given to alloc. The get/set
 *   pair works like the allocator pair; a domain on another allocator answers RTMEM_ENOTSUP.
 */
#ifndef RUNTIME_MEM_H
#define RUNTIME_MEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  define RTMEM_EXPORT __declspec(dllexport)
#else
#  define RTMEM_EXPORT __attribute__((visibility("default")))
#endif

/* Version of this ABI; a table filled by a runtime with another version must not be used. */
#define RTMEM_ABI_VERSION 1

/* The domains (PyMemAllocatorDomain order; the values never change). */
typedef enum rtmem_domain {
    RTMEM_DOMAIN_RAW = 0,
    RTMEM_DOMAIN_MEM = 1,
    RTMEM_DOMAIN_OBJ = 2
} rtmem_domain;

/* Status codes of the int functions. */
#define RTMEM_OK        0   /* done */
#define RTMEM_EINVAL   (-1) /* a NULL pointer, an incomplete struct, or a domain outside 0..2 */
#define RTMEM_EBUSY    (-2) /* refused: the domain has live blocks only its current allocator can free */
#define RTMEM_ENOTSUP  (-3) /* no small-object allocator in this domain, or the hook is not installed */
#define RTMEM_EFAULT   (-4) /* the runtime failed unexpectedly; nothing changed */
#define RTMEM_ENOMEM   (-5) /* tracing could not store the trace */
#define RTMEM_ENOTRACING (-6) /* the runtime is not tracing allocations */

/* PEP 445's PyMemAllocatorEx: the field order is the ABI. All four functions are required. */
typedef struct rtmem_allocator {
    void *ctx;                                                     /* passed back to every function */
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void  (*free)(void *ctx, void *ptr);
} rtmem_allocator;

/* PEP 445's PyObjectArenaAllocator. */
typedef struct rtmem_arena_allocator {
    void *ctx;
    void *(*alloc)(void *ctx, size_t size);
    void  (*free)(void *ctx, void *ptr, size_t size);
} rtmem_arena_allocator;

/* The function table a runtime hands to native code. Fields are only ever appended. */
typedef struct rtmem_api {
    uint32_t abi_version;  /* RTMEM_ABI_VERSION */
    uint32_t size;         /* sizeof(rtmem_api) in the runtime that filled it */
    void *runtime;         /* pass as the first argument of every function below */

    void *(*malloc)(void *runtime, int domain, size_t size);
    void *(*calloc)(void *runtime, int domain, size_t nelem, size_t elsize);
    void *(*realloc)(void *runtime, int domain, void *ptr, size_t new_size);
    void  (*free)(void *runtime, int domain, void *ptr);

    int (*get_allocator)(void *runtime, int domain, rtmem_allocator *out);
    int (*set_allocator)(void *runtime, int domain, const rtmem_allocator *allocator);
    int (*install_hook)(void *runtime, int domain, const rtmem_allocator *hook, rtmem_allocator *previous);
    int (*remove_hook)(void *runtime, int domain, const rtmem_allocator *hook);

    int (*get_arena_allocator)(void *runtime, int domain, rtmem_arena_allocator *out);
    int (*set_arena_allocator)(void *runtime, int domain, const rtmem_arena_allocator *arenas);

    int64_t (*live_blocks)(void *runtime, int domain);   /* -1 for a bad domain */
    int64_t (*live_bytes)(void *runtime, int domain);    /* -1 for a bad domain */

    /* Allocation tracing of memory the runtime did not allocate (PyTraceMalloc_Track / _Untrack): while the runtime
       traces, trace_track records a block of `size` bytes at `ptr` in trace domain `trace_domain` with the current
       traceback (tracking it again updates the trace), and trace_untrack forgets it. Use a trace domain number of your
       own: 0, 1 and 2 are the runtime's raw, mem and obj. Both return RTMEM_OK, RTMEM_ENOMEM if the trace could not
       be stored, or RTMEM_ENOTRACING when the runtime is not tracing. Present when api->size covers them. */
    int (*trace_track)(void *runtime, unsigned int trace_domain, uintptr_t ptr, size_t size);
    int (*trace_untrack)(void *runtime, unsigned int trace_domain, uintptr_t ptr);
} rtmem_api;

/* What an extension exports; the host calls it once with the runtime's table. Return 0 on success. */
typedef int (*rtmem_extension_init_fn)(const rtmem_api *api);

#ifdef __cplusplus
}
#endif

#endif /* RUNTIME_MEM_H */
