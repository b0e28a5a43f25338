using Runtime.Memory;

namespace Runtime.Host;

/// <summary>
/// A small, deterministic workload through all three domains, shaped like an interpreter's traffic: many small
/// objects in <c>obj</c> (freed out of order), growing and shrinking buffers in <c>mem</c>, large and zeroed
/// buffers in <c>raw</c>, and the edge cases of PEP 445 (zero sizes, an oversize request). Every block's contents
/// are written and checked before it is freed, and nothing is left live at the end.
/// </summary>
internal static unsafe class BuiltInWorkload
{
    /// <summary>Object sizes cycled through in <c>obj</c>: the spread of a small interpreter's objects.</summary>
    private static readonly nuint[] ObjectSizes = [16, 24, 32, 48, 64, 96, 128, 256, 512];

    private const int ObjectCount = 10_000;

    /// <summary>What the workload did, for the report. <c>Anomalies</c> counts results that broke the contract
    /// (a null where a block was due, a block where null was due); <c>CorruptBlocks</c> counts blocks whose contents
    /// did not survive.</summary>
    internal readonly record struct Result(long Operations, long CorruptBlocks, int Anomalies);

    public static Result Run(IRuntimeMemory runtime)
    {
        var state = new State();
        RunObjects(runtime.Obj, ref state);
        RunBuffers(runtime.Mem, ref state);
        RunRaw(runtime.Raw, ref state);
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            // PEP 445: a size above nint.MaxValue is refused before the allocator is called.
            state.Operations++;
            if (runtime[kind].Malloc((nuint)nint.MaxValue + 1) != null)
            {
                state.Anomalies++; // it should have been null
            }
        }

        return new Result(state.Operations, state.Corrupt, state.Anomalies);
    }

    private struct State
    {
        public long Operations;
        public long Corrupt;
        public int Anomalies;
    }

    /// <summary>10,000 objects; every other one is freed first, then the rest in reverse order.</summary>
    private static void RunObjects(MemoryDomain obj, ref State state)
    {
        var blocks = new nint[ObjectCount];
        for (int i = 0; i < ObjectCount; i++)
        {
            nuint size = ObjectSizes[i % ObjectSizes.Length];
            byte* p = (byte*)obj.Malloc(size);
            state.Operations++;
            if (p == null)
            {
                state.Anomalies++;
                continue;
            }

            Fill(p, size, (byte)i);
            blocks[i] = (nint)p;
        }

        for (int pass = 0; pass < 2; pass++)
        {
            for (int i = ObjectCount - 1 - pass; i >= 0; i -= 2)
            {
                if (blocks[i] == 0)
                {
                    continue;
                }

                byte* p = (byte*)blocks[i];
                if (!Check(p, ObjectSizes[i % ObjectSizes.Length], (byte)i))
                {
                    state.Corrupt++;
                }

                obj.Free(p);
                state.Operations++;
            }
        }

        obj.Free(obj.Malloc(0)); // size 0: a distinct non-null block
        state.Operations += 2;
    }

    /// <summary>A buffer grown by doubling to 64 KiB and shrunk again, plus zeroed arrays.</summary>
    private static void RunBuffers(MemoryDomain mem, ref State state)
    {
        nuint size = 16;
        byte* buffer = (byte*)mem.Malloc(size);
        state.Operations++;
        if (buffer == null)
        {
            state.Anomalies++;
            return;
        }

        Fill(buffer, size, 7);
        while (size < 64 * 1024)
        {
            byte* grown = (byte*)mem.Realloc(buffer, size * 2);
            state.Operations++;
            if (grown == null)
            {
                state.Anomalies++;
                break;
            }

            // realloc keeps the old contents; fill the new half so the whole buffer can be checked.
            if (!Check(grown, size, 7))
            {
                state.Corrupt++;
            }

            buffer = grown;
            Fill(buffer, size * 2, 7);
            size *= 2;
        }

        buffer = (byte*)mem.Realloc(buffer, 100);
        state.Operations++;
        if (buffer == null || !Check(buffer, 100, 7))
        {
            state.Corrupt++;
        }

        mem.Free(buffer);
        state.Operations++;

        for (nuint n = 0; n < 64; n++)
        {
            byte* zeros = (byte*)mem.Calloc(n, 8);
            state.Operations++;
            if (zeros == null)
            {
                state.Anomalies++;
                continue;
            }

            if (!Check(zeros, n * 8, 0, step: 0))
            {
                state.Corrupt++;
            }

            mem.Free(zeros);
            state.Operations++;
        }
    }

    /// <summary>Four 1 MiB buffers (one zeroed), resized, then freed.</summary>
    private static void RunRaw(MemoryDomain raw, ref State state)
    {
        const nuint MiB = 1024 * 1024;
        var buffers = new nint[4];
        for (int i = 0; i < buffers.Length; i++)
        {
            byte* p = (byte*)(i == 0 ? raw.Calloc(MiB, 1) : raw.Malloc(MiB));
            state.Operations++;
            if (p == null)
            {
                state.Anomalies++;
                continue;
            }

            if (i == 0 && !Check(p, MiB, 0, step: 0))
            {
                state.Corrupt++;
            }

            Fill(p, MiB, (byte)i);
            buffers[i] = (nint)p;
        }

        for (int i = 0; i < buffers.Length; i++)
        {
            if (buffers[i] == 0)
            {
                continue;
            }

            byte* p = (byte*)raw.Realloc((void*)buffers[i], MiB / 2);
            state.Operations++;
            if (p == null || !Check(p, MiB / 2, (byte)i))
            {
                state.Corrupt++;
                continue;
            }

            raw.Free(p);
            state.Operations++;
        }

        raw.Free(raw.Calloc(0, 8)); // calloc with a zero count: a distinct non-null block
        state.Operations += 2;
    }

    /// <summary>Writes the pattern <c>seed, seed+step, seed+2·step, ...</c>.</summary>
    private static void Fill(byte* p, nuint size, byte seed, byte step = 1)
    {
        var span = new Span<byte>(p, checked((int)size));
        for (int i = 0; i < span.Length; i++)
        {
            span[i] = (byte)(seed + i * step);
        }
    }

    private static bool Check(byte* p, nuint size, byte seed, byte step = 1)
    {
        var span = new ReadOnlySpan<byte>(p, checked((int)size));
        for (int i = 0; i < span.Length; i++)
        {
            if (span[i] != (byte)(seed + i * step))
            {
                return false;
            }
        }

        return true;
    }
}
