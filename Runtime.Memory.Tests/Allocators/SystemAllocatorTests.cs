using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Allocators;

/// <summary>The system allocator called directly, outside a domain: it makes its own size checks.</summary>
public sealed unsafe class SystemAllocatorTests
{
    private readonly SystemAllocator _allocator = new();

    [Fact]
    public void Block_size_is_the_size_last_requested()
    {
        void* p = _allocator.Malloc(123);
        Assert.Equal((nuint)123, _allocator.BlockSize(p));
        p = _allocator.Realloc(p, 7);
        Assert.Equal((nuint)7, _allocator.BlockSize(p));
        _allocator.Free(p);
        void* c = _allocator.Calloc(3, 11);
        Assert.Equal((nuint)33, _allocator.BlockSize(c));
        _allocator.Free(c);
    }

    [Fact]
    public void Sizes_that_cannot_carry_the_header_return_null()
    {
        Assert.True(_allocator.Malloc(nuint.MaxValue) == null);
        Assert.True(_allocator.Malloc((nuint)nint.MaxValue) == null);
        Assert.True(_allocator.Calloc(nuint.MaxValue, nuint.MaxValue) == null);
        void* p = _allocator.Malloc(8);
        Assert.True(_allocator.Realloc(p, nuint.MaxValue - 1) == null);
        _allocator.Free(p);
    }

    [Fact]
    public void Realloc_of_null_allocates_and_free_of_null_does_nothing()
    {
        void* p = _allocator.Realloc(null, 40);
        Assert.True(p != null && Blocks.IsAligned(p));
        _allocator.Free(p);
        _allocator.Free(null);
    }

    [Fact]
    public void Zero_byte_blocks_are_distinct_and_aligned()
    {
        void* a = _allocator.Malloc(0);
        void* b = _allocator.Calloc(0, 0);
        Assert.True(a != null && b != null && a != b && Blocks.IsAligned(a) && Blocks.IsAligned(b));
        _allocator.Free(a);
        _allocator.Free(b);
    }
}
