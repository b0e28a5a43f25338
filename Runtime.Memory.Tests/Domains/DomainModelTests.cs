using CsCheck;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Domains;

/// <summary>
/// Model-based check of a domain: random sequences of malloc / calloc / realloc / free, run against the domain and
/// against a plain model of the live blocks. After every operation the domain's accounting must equal the model's,
/// and every live block must still hold what was written into it. CsCheck shrinks a failure to a minimal sequence.
/// </summary>
public sealed unsafe class DomainModelTests
{
    private enum OpKind { Malloc, Calloc, Realloc, Free }

    private readonly record struct Op(OpKind Kind, int Slot, int Size, int Count);

    private const int Slots = 16;

    private static readonly Gen<Op> GenOp = Gen.Select(
        Gen.Enum<OpKind>(), Gen.Int[0, Slots - 1], Gen.Int[0, 2000], Gen.Int[0, 6],
        (kind, slot, size, count) => new Op(kind, slot, size, count));

    private sealed class Model
    {
        public readonly (nint Block, long Size, byte Seed)[] Live = new (nint, long, byte)[Slots];
        public long Allocations, Frees, Reallocations, LiveBytes, Peak;

        public long LiveBlocks => Live.Count(b => b.Block != 0);
    }

    [Theory, ClassData(typeof(AllDomains))]
    public void Random_operation_sequences_keep_accounting_and_contents_exact(MemoryDomainKind kind)
    {
        GenOp.Array[1, 120].Sample(ops =>
        {
            RuntimeMemory runtime = RuntimeMemory.Create();
            MemoryDomain domain = runtime[kind];
            var model = new Model();
            byte seed = 0;
            try
            {
                foreach (Op op in ops)
                {
                    Apply(domain, model, op, ++seed);
                    Check(domain, model);
                }
            }
            finally
            {
                foreach (var (block, _, _) in model.Live)
                {
                    domain.Free((void*)block);
                }
            }

            MemoryAssert.NoLiveBlocks(runtime);
        }, iter: 150);
    }

    private static void Apply(MemoryDomain domain, Model model, Op op, byte seed)
    {
        ref var slot = ref model.Live[op.Slot];
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
                slot = ((nint)p, size, seed);
                model.Allocations++;
                Grow(model, size);
                break;

            case OpKind.Realloc:
                byte* q = (byte*)domain.Realloc((void*)slot.Block, (nuint)op.Size);
                Assert.True(q != null && Blocks.IsAligned(q));
                if (slot.Block == 0)
                {
                    model.Allocations++; // realloc(null, n) is malloc(n)
                    Grow(model, op.Size);
                }
                else
                {
                    Assert.True(Blocks.Holds(q, (nuint)Math.Min(slot.Size, op.Size), slot.Seed), "realloc must keep the contents");
                    model.Reallocations++;
                    Grow(model, op.Size - slot.Size);
                }

                Blocks.Fill(q, (nuint)op.Size, seed);
                slot = ((nint)q, op.Size, seed);
                break;

            case OpKind.Free:
                Free(domain, model, ref slot);
                break;
        }
    }

    private static void Free(MemoryDomain domain, Model model, ref (nint Block, long Size, byte Seed) slot)
    {
        if (slot.Block != 0)
        {
            Assert.True(Blocks.Holds((void*)slot.Block, (nuint)slot.Size, slot.Seed), "a live block lost its contents");
            model.Frees++;
            model.LiveBytes -= slot.Size;
        }

        domain.Free((void*)slot.Block); // free(null) included: it must do nothing
        slot = default;
    }

    private static void Grow(Model model, long bytes)
    {
        model.LiveBytes += bytes;
        model.Peak = Math.Max(model.Peak, model.LiveBytes);
    }

    private static void Check(MemoryDomain domain, Model model)
    {
        DomainStatistics s = domain.GetStatistics();
        Assert.Equal(
            (model.LiveBlocks, model.LiveBytes, model.Peak, model.Allocations, model.Frees, model.Reallocations, 0L),
            (s.LiveBlocks, s.LiveBytes, s.PeakBytes, s.Allocations, s.Frees, s.Reallocations, s.Failures));
    }
}
