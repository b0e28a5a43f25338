using CsCheck;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Domains;

/// <summary>
/// Model-based check of a domain: random sequences of malloc / calloc / realloc / free, run against the domain and
/// against a plain model of the live blocks. After every operation the domain's accounting must equal the model's,
/// every live block must still hold what was written into it, no two live blocks may overlap, and every block must be
/// 16-byte aligned. Run on each backend (system, small-object, mimalloc) with and without the debug hooks, and each
/// of those with tracing off and on: traced, the tracer must trace exactly the model's live blocks and bytes.
/// CsCheck shrinks a failure to a minimal sequence.
/// </summary>
public sealed unsafe class DomainModelTests
{
    private enum OpKind { Malloc, Calloc, Realloc, Free }

    private readonly record struct Op(OpKind Kind, int Slot, int Size, int Count);

    private const int Slots = 16;

    private static readonly Gen<Op> GenOp = Gen.Select(
        Gen.Enum<OpKind>(), Gen.Int[0, Slots - 1], Gen.Int[0, 2000], Gen.Int[0, 6],
        (kind, slot, size, count) => new Op(kind, slot, size, count));

    /// <summary>A live block of the model: where it is, its requested and accounted sizes, its fill, and whether it
    /// lives in the small-object allocator's pools (only such blocks are accounted by class size).</summary>
    private record struct Slot(nint Block, long Size, long Accounted, byte Seed, bool InPool);

    private sealed class Model
    {
        public readonly Slot[] Live = new Slot[Slots];
        public long Allocations, Frees, Reallocations, LiveBytes, Peak;

        public bool Pools;

        public long LiveBlocks => Live.Count(b => b.Block != 0);

        public long Account(bool inPool, long size) => inPool ? (long)SmallObjectAllocator.AccountedSize((nuint)size) : size;
    }

    [SkippableTheory, ClassData(typeof(AllAllocatorsDomainsAndTracing))]
    public void Random_operation_sequences_keep_accounting_and_contents_exact(string allocator, MemoryDomainKind kind, bool traced)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        GenOp.Array[1, 200].Sample(ops =>
        {
            using RuntimeMemory runtime = TestRuntimes.Create(allocator);
            if (traced)
            {
                runtime.Tracer.Start(frames: 1);
            }

            MemoryDomain domain = runtime[kind];
            var model = new Model { Pools = domain.BaseAllocator is SmallObjectAllocator && domain.DebugHook is null }; // tracing may sit on top
            byte seed = 0;
            try
            {
                foreach (Op op in ops)
                {
                    Apply(domain, model, op, ++seed);
                    Check(domain, model);
                    if (traced)
                    {
                        CheckTraces(runtime, model);
                    }
                }

                if (runtime.SmallObjects(kind) is { } small)
                {
                    Assert.Empty(small.CheckInvariants()); // with the sequence's blocks still live
                }
            }
            finally
            {
                foreach (Slot slot in model.Live)
                {
                    domain.Free((void*)slot.Block);
                }
            }

            MemoryAssert.NoLiveBlocks(runtime);
        }, iter: traced ? 60 : 150);
    }

    private static void Apply(MemoryDomain domain, Model model, Op op, byte seed)
    {
        ref Slot slot = ref model.Live[op.Slot];
        switch (op.Kind)
        {
            case OpKind.Malloc or OpKind.Calloc:
                if (slot.Block != 0)
                {
                    Free(domain, model, ref slot);
                }

                long size = op.Kind == OpKind.Malloc ? op.Size : (long)op.Count * (op.Size / 8);
                byte* p = (byte*)(op.Kind == OpKind.Malloc ? domain.Malloc((nuint)op.Size) : domain.Calloc((nuint)op.Count, (nuint)(op.Size / 8)));
                Assert.True(p != null && Blocks.IsAligned(p));
                if (op.Kind == OpKind.Calloc)
                {
                    Assert.True(Blocks.IsZero(p, (nuint)size), "calloc must zero the block");
                }

                Blocks.Fill(p, (nuint)size, seed);
                bool inPool = model.Pools && size <= SmallObjectAllocator.SmallRequestThreshold;
                slot = new Slot((nint)p, size, model.Account(inPool, size), seed, inPool);
                model.Allocations++;
                Grow(model, slot.Accounted);
                break;

            case OpKind.Realloc:
                byte* q = (byte*)domain.Realloc((void*)slot.Block, (nuint)op.Size);
                Assert.True(q != null && Blocks.IsAligned(q));
                long before = slot.Accounted;
                bool stays = slot.Block != 0 && !slot.InPool; // a block outside the pools never moves into them
                bool nowInPool = model.Pools && !stays && op.Size <= SmallObjectAllocator.SmallRequestThreshold;
                if (slot.Block == 0)
                {
                    model.Allocations++; // realloc(null, n) is malloc(n)
                    before = 0;
                }
                else
                {
                    Assert.True(Blocks.Holds(q, (nuint)Math.Min(slot.Size, op.Size), slot.Seed), "realloc must keep the contents");
                    model.Reallocations++;
                }

                long accounted = model.Account(nowInPool, op.Size);
                bool inPlace = slot.Block != 0 && slot.InPool && nowInPool && op.Size <= slot.Accounted
                    && (op.Size * 4 > slot.Accounted * 3 || accounted == slot.Accounted); // pymalloc's shrink-in-place rule
                if (inPlace)
                {
                    Assert.True(q == (byte*)slot.Block, "a small shrink that wastes little stays in place");
                    accounted = slot.Accounted;
                }

                Blocks.Fill(q, (nuint)op.Size, seed);
                slot = new Slot((nint)q, op.Size, accounted, seed, nowInPool);
                Grow(model, slot.Accounted - before);
                break;

            case OpKind.Free:
                Free(domain, model, ref slot);
                break;
        }
    }

    private static void Free(MemoryDomain domain, Model model, ref Slot slot)
    {
        if (slot.Block != 0)
        {
            Assert.True(Blocks.Holds((void*)slot.Block, (nuint)slot.Size, slot.Seed), "a live block lost its contents");
            model.Frees++;
            model.LiveBytes -= slot.Accounted;
        }

        domain.Free((void*)slot.Block); // free(null) included: it must do nothing
        slot = default;
    }

    private static void Grow(Model model, long bytes)
    {
        model.LiveBytes += bytes;
        model.Peak = Math.Max(model.Peak, model.LiveBytes);
    }

    /// <summary>Tracing records requested sizes (as tracemalloc does): the model's live blocks and their sizes, exactly.</summary>
    private static void CheckTraces(RuntimeMemory runtime, Model model)
    {
        Assert.Equal(0, runtime.Tracer.TraceFailures);
        Assert.Equal((int)model.LiveBlocks, runtime.Tracer.TracedBlocks);
        Assert.Equal(model.Live.Where(b => b.Block != 0).Sum(b => b.Size), runtime.Tracer.GetTracedMemory().Current);
        foreach (Slot slot in model.Live.Where(b => b.Block != 0))
        {
            Assert.NotNull(runtime.Tracer.GetTraceback((void*)slot.Block));
        }
    }

    private static void Check(MemoryDomain domain, Model model)
    {
        Slot[] live = [.. model.Live.Where(b => b.Block != 0).OrderBy(b => b.Block)];
        for (int i = 1; i < live.Length; i++)
        {
            Assert.True(live[i - 1].Block + Math.Max(1, live[i - 1].Size) <= live[i].Block, "two live blocks overlap");
        }

        DomainStatistics s = domain.GetStatistics();
        Assert.Equal(
            (model.LiveBlocks, model.LiveBytes, model.Peak, model.Allocations, model.Frees, model.Reallocations, 0L),
            (s.LiveBlocks, s.LiveBytes, s.PeakBytes, s.Allocations, s.Frees, s.Reallocations, s.Failures));
    }
}
