using System.Runtime.CompilerServices;
using Runtime.Memory.Accounting;
using Runtime.Memory.Diagnostics;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The shadow of a <see cref="TraceTable"/> (exact sessions on 64-bit): a word per traced block; its layout and
/// codec, the removals that clear a word, and the scan of every word.
/// </summary>
/// <remarks>
/// <para><b>The shadow (exact sessions).</b> A trace that fits is one word in a <see cref="ShadowRadix{TSlot}"/> (a
/// word per 16-byte granule of key), which the block's owner writes with a plain store when it allocates and clears
/// with a plain store when it frees: no lock, no atomic operation, no probe. A pool block of the small-object allocator
/// right below the tracer is keyed by its dense slot (<see cref="SmallObjectAllocator.DenseSlotOf"/>: the words of one
/// pool's blocks packed together, 8 bytes per block whatever its size, so a large heap freed at random keeps its
/// words in the caches: churn 2.75x to 1.8x); any other block by its address (below 2^47, 16-aligned). A free looks up
/// the dense slot first, then the address (a block traced while another hook sat between them).</para>
/// <code>
///  bit 63 present | 62..56 generation | 55..54 domain | 53..32 traceback id | 31..0 size
///  dense slot's word: 31..21 zero | 20..16 size class (to map the slot back to the block) | 15..0 size (at most 512)
/// </code>
/// <para>A word counts only with the generation of the table's current <see cref="TraceEpoch"/>. A new epoch (a new
/// generation) begins with each session and each <see cref="Clear"/>, which then zeroes every word of another
/// generation; so a word that a call still in flight writes for an epoch that has ended is ignored (and zeroed by the
/// next clear, or overwritten when its address is traced again). Traces that do not fit a word (an extension's domain,
/// a size of 4 GiB or more, more than 4 million tracebacks, an address above 2^48 or not 16-aligned) and every trace
/// of a sampling session (which carry estimates) go to the stripes.</para>
/// </remarks>
internal sealed unsafe partial class TraceTable
{
    private const ulong Present = 1UL << 63;
    private const ulong GenerationMask = 0xFFUL << 56; // present bit and generation
    private const int MaxShadowTraceback = (1 << 22) - 1;
    private const long MaxDenseSize = 0xFFFF;

    private readonly ShadowRadix<ulong>? _shadow;

    /// <summary>Whether this table keeps traces in the shadow (an exact session on 64-bit): callers then pass dense slots.</summary>
    public bool HasShadow => _shadow is not null;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsOf(TraceEpoch epoch, ulong word) => (word & GenerationMask) == epoch.GenerationBits;

    private static uint DomainOf(ulong word) => (uint)(word >> 54) & 3;

    private static int TracebackOf(ulong word) => (int)(word >> 32) & MaxShadowTraceback;

    /// <summary>The traced size in a word: the low 32 bits, or for a dense slot's word the low 16 (the class is above).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static long SizeOf(ulong word, bool dense) => dense ? (long)(word & 0xFFFF) : (uint)word;

    private static int ClassOf(ulong word) => (int)(word >> 16) & 31;

    /// <summary>Whether an address can key the shadow by itself: 16-aligned and below the dense slots' bit.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsRawKey(nuint address) => address % 16 == 0 && (ulong)address < SmallObjectAllocator.DenseSlotBit;

    private static Slot Decode(nuint address, ulong word, bool dense) => new()
    {
        Address = address,
        Domain = DomainOf(word),
        Traceback = TracebackOf(word),
        EstimatedSize = SizeOf(word, dense),
        EstimatedCount = 1,
    };

    /// <summary>The trace a shadow word at <paramref name="key"/> (an address, or a dense slot) holds.</summary>
    private static Slot DecodeAt(nuint key, ulong word)
    {
        bool dense = ((ulong)key & SmallObjectAllocator.DenseSlotBit) != 0;
        return Decode(dense ? SmallObjectAllocator.BlockOfDenseSlot(key, ClassOf(word)) : key, word, dense);
    }

    /// <summary>
    /// Clears the block's shadow word when it holds this epoch's trace of <paramref name="domain"/>: the dense slot's
    /// first, then the address's (a block traced while another hook sat between the tracer and the small-object
    /// allocator was keyed by its address).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool RemoveFromShadow(ThreadShard shard, uint domain, nuint address, nuint dense, out ulong code, out bool wasDense)
    {
        code = 0;
        wasDense = false;
        if (_shadow is not { } shadow)
        {
            return false;
        }

        TraceEpoch epoch = _epoch;
        if (dense != 0 && shadow.SlotOf(dense, create: false) is var slot && slot != null)
        {
            code = Volatile.Read(ref *slot);
            if (IsOf(epoch, code) && DomainOf(code) == domain)
            {
                // The block's owner is the only writer of this word while it is this epoch's (a clear zeroes only
                // other generations' words): a plain store takes it out.
                Volatile.Write(ref *slot, 0);
                Account(shard, epoch, -SizeOf(code, dense: true));
                wasDense = true;
                return true;
            }
        }

        return RemoveRawFromShadow(shard, shadow, epoch, domain, address, out code);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool RemoveRawFromShadow(ThreadShard shard, ShadowRadix<ulong> shadow, TraceEpoch epoch, uint domain, nuint address, out ulong code)
    {
        code = 0;
        ulong* word = IsRawKey(address) ? shadow.SlotOf(address, create: false) : null;
        if (word == null)
        {
            return false;
        }

        code = Volatile.Read(ref *word);
        if (!IsOf(epoch, code) || DomainOf(code) != domain)
        {
            return false;
        }

        Volatile.Write(ref *word, 0);
        Account(shard, epoch, -SizeOf(code, dense: false));
        return true;
    }

    /// <summary>Calls <paramref name="visitWord"/> with the address, the word's location and the value read once of every
    /// nonzero shadow word, of any generation (a scan of every chunk).</summary>
    private void ScanShadow(Action<nuint, nint, ulong> visitWord)
    {
        if (_shadow is not { } shadow)
        {
            return;
        }

        shadow.ForEachChunk((chunkBase, chunk) =>
        {
            var words = new ReadOnlySpan<ulong>((void*)chunk, ShadowRadix<ulong>.ChunkSlots);
            int i = 0;
            while (i < words.Length)
            {
                int next = words[i..].IndexOfAnyExcept(0UL);
                if (next < 0)
                {
                    break;
                }

                i += next;
                ulong code = Volatile.Read(ref *((ulong*)chunk + i));
                if (code != 0)
                {
                    visitWord(chunkBase + ((nuint)i << ShadowRadix<ulong>.GranuleBits), chunk + (i * sizeof(ulong)), code);
                }

                i++;
            }
        });
    }
}
