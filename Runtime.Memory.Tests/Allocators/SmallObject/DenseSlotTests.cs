
namespace Runtime.Memory.Tests.Allocators.SmallObject;

/// <summary>Dense slots: the numbering of pool blocks that side tables (the tracer's shadow) key by.</summary>
public sealed unsafe class DenseSlotTests
{
    [Fact]
    public void Every_pool_block_of_every_class_has_a_distinct_slot_in_its_pool_that_maps_back_to_it()
    {
        using var allocator = new SmallObjectAllocator();
        var blocks = new List<nint>();
        var slots = new HashSet<nuint>();
        try
        {
            for (int cls = 0; cls < SizeClasses.Count; cls++)
            {
                int size = SizeClasses.SizeOf(cls);
                int count = SizeClasses.BlocksPerPool(cls) + 3; // more than a pool: every index of a full pool, and the next pool
                foreach (nuint request in new[] { (nuint)size, (nuint)(size - 15) })
                {
                    for (int i = 0; i < count; i++)
                    {
                        void* block = allocator.Malloc(request);
                        Assert.True(block != null);
                        blocks.Add((nint)block);
                        nuint slot = allocator.DenseSlotOf(block, out int found);
                        Assert.Equal(cls, found);
                        Assert.Equal(slot, SmallObjectAllocator.DenseSlotOfPoolBlock(block, cls));
                        Assert.True(slots.Add(slot), $"class {cls}: slot {slot:x} given twice");
                        Assert.NotEqual(0UL, (ulong)slot & SmallObjectAllocator.DenseSlotBit);
                        nuint pool = (nuint)Pool.Of(block);
                        ulong plain = (ulong)slot & ~SmallObjectAllocator.DenseSlotBit;
                        Assert.InRange(plain, (ulong)pool + (ulong)SizeClasses.PoolOverhead, (ulong)pool + SizeClasses.PoolSize - 16);
                        Assert.Equal((nuint)block, SmallObjectAllocator.BlockOfDenseSlot(slot, cls));
                    }
                }
            }
        }
        finally
        {
            foreach (nint b in blocks)
            {
                allocator.Free((void*)b);
            }
        }
    }

    [Fact]
    public void Pointers_that_are_not_the_start_of_a_pool_block_have_no_slot()
    {
        using var allocator = new SmallObjectAllocator();
        void* small = allocator.Malloc(100); // class 6 (112 bytes)
        void* large = allocator.Malloc(4000);
        long local = 0;
        try
        {
            Assert.NotEqual((nuint)0, allocator.DenseSlotOf(small, out _));
            foreach (nuint inside in new nuint[] { 1, 15, 16, 96, 111 })
            {
                Assert.Equal((nuint)0, allocator.DenseSlotOf((byte*)small + inside, out int cls));
                Assert.Equal(-1, cls);
            }

            Assert.Equal((nuint)0, allocator.DenseSlotOf(Pool.Of(small), out _)); // the pool header
            Assert.Equal((nuint)0, allocator.DenseSlotOf((byte*)Pool.Of(small) + 16, out _));
            Assert.Equal((nuint)0, allocator.DenseSlotOf(large, out _));
            Assert.Equal((nuint)0, allocator.DenseSlotOf(null, out _));
            Assert.Equal((nuint)0, allocator.DenseSlotOf(&local, out _));
        }
        finally
        {
            allocator.Free(small);
            allocator.Free(large);
        }
    }
}
