using System.Runtime.CompilerServices;

namespace Runtime.Memory.Tracing;

/// <summary>
/// The free filter of a <see cref="TraceTable"/>: what a free through the table's hook has to do, read without a
/// lock in as few loads as can be: <see cref="FreeWork"/>, one word, and for a table that keeps its traces in the
/// stripes only, its bucket's bit (<see cref="MayHoldStripeTrace"/>).
/// </summary>
/// <remarks>
/// The bucket counts, their bits and the word's trace count change only under the stripe's lock (<see cref="Clear"/>
/// zeroes them holding every lock); the word's shadow bit is set at construction, its retired bit by
/// <see cref="Retire"/> when the session stops. A free, on any thread, reads the word and the bits with a volatile
/// load and no lock; the counts are read only under the lock.
/// </remarks>
internal sealed partial class TraceTable
{
    // How many stripe traces have each value of the hash's top 12 bits (a bucket lies in one stripe, whose lock guards
    // its count): a free whose bucket is 0 is done with one load, without touching the stripe. With sampling's few
    // live traces almost every free stops here (10 live samples: 1 free in 400 goes on to lock the stripe).
    private const int BucketBits = 12;
    private readonly int[] _buckets = new int[1 << BucketBits];

    // One bit per bucket, set while its count is not 0: the word a free reads (512 bytes in all, so it stays in the L1
    // cache where the counts' 16 KiB would not under a large heap). A stripe's 64 buckets are exactly one word
    // (bucket = the hash's top 12 bits, stripe = its top 6), so the word changes only under that stripe's lock.
    private readonly ulong[] _occupied = new ulong[StripeCount];

    // What a free may have to do, in one word: the stripes' trace count (the buckets' sum) in the low bits, and a bit
    // each for "keeps a shadow" and "retired". 0, sampling's usual state, means a free has nothing to do: one load.
    // The count changes under a stripe lock with an atomic add (Clear holds every lock); it stays below 2^29.
    private const int FreeWorkShadow = 1 << 29;
    private const int FreeWorkRetired = 1 << 30;
    private const int StripeTraceMask = FreeWorkShadow - 1;
    private int _freeWork;

    /// <summary>Set when its session stops: a hook of that session still in flight then works on the current session's table.</summary>
    public bool Retired => (Volatile.Read(ref _freeWork) & FreeWorkRetired) != 0;

    /// <summary>Marks the table's session stopped (<see cref="Retired"/>).</summary>
    public void Retire() => Interlocked.Or(ref _freeWork, FreeWorkRetired);

    /// <summary>What a free through this table's hook has to do, as one word: 0 when nothing (no shadow, no stripe
    /// trace, not retired); see <see cref="IsCurrentShadow"/>.</summary>
    public int FreeWork
    {
        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        get => Volatile.Read(ref _freeWork);
    }

    /// <summary>Whether <see cref="FreeWork"/>'s <paramref name="freeWork"/> says the table keeps a shadow and is not retired.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsCurrentShadow(int freeWork) => (freeWork & (FreeWorkShadow | FreeWorkRetired)) == FreeWorkShadow;

    /// <summary>Whether <see cref="FreeWork"/>'s <paramref name="freeWork"/> says the table keeps traces in its stripes
    /// only (no shadow, not retired): a free then has work only when <see cref="MayHoldStripeTrace"/> says so.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool IsStripesOnly(int freeWork) => (freeWork & (FreeWorkShadow | FreeWorkRetired)) == 0;

    /// <summary>
    /// Whether a stripe may hold a trace of <paramref name="address"/> (its hash's bucket is not empty): false means
    /// certainly not, whatever the domain. A sampling session's free asks this first, so that while samples are live
    /// a free of a block that is not one of them costs one hash and one load (4,096 buckets; a bucket is written under
    /// its stripe's lock before the traced block is handed out, so a free of that block sees it).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool MayHoldStripeTrace(nuint address) => IsBucketOccupied(Hash(address));

    /// <summary>Whether the bucket of <paramref name="hash"/> counts a trace: its bit in the stripe's word of <see cref="_occupied"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool IsBucketOccupied(ulong hash) =>
        ((Volatile.Read(ref _occupied[(int)(hash >> (64 - StripeBits))]) >> (int)(hash >> (64 - BucketBits))) & 1) != 0; // shift counts are mod 64: the bucket's low 6 bits

    /// <summary>Whether the stripe of <paramref name="hash"/> may hold a trace with that hash (its bucket is not empty).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool StripeOccupied(ulong hash) =>
        (Volatile.Read(ref _freeWork) & StripeTraceMask) != 0 && IsBucketOccupied(hash);

    /// <summary>Changes the count of <paramref name="hash"/>'s bucket by <paramref name="delta"/> (±1), and its bit
    /// when the count leaves or reaches 0; only under its stripe's lock.</summary>
    private void CountInBucket(ulong hash, int delta)
    {
        ref int count = ref _buckets[(int)(hash >> (64 - BucketBits))];
        int after = count + delta;
        count = after;
        if (after == (delta > 0 ? 1 : 0))
        {
            ref ulong word = ref _occupied[(int)(hash >> (64 - StripeBits))];
            ulong bit = 1UL << (int)(hash >> (64 - BucketBits));
            Volatile.Write(ref word, delta > 0 ? word | bit : word & ~bit);
        }
    }
}
