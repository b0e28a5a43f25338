using System.Runtime.CompilerServices;

namespace Runtime.Memory.Tracing;

// One of a TraceTable's 64 stripes: a spin lock, the number of traces it holds, and its slots (a power of two of
// them, open addressing: TraceTable.Stripes.cs). Lock is 0 when free, 1 when held; Slots and Count change only
// on the thread that holds it (Enter/Exit), while Count and Slots.Length are also read without it. The padding keeps
// the locks of neighbouring stripes on separate cache lines.
internal sealed partial class TraceTable
{
    /// <summary>A stripe: its lock, its slots. The padding fields make each stripe object about 150 bytes, so the locks
    /// of neighbouring stripes never share a cache line (whatever order the runtime lays the fields out in).</summary>
    private sealed class Stripe
    {
#pragma warning disable CS0169, IDE0051 // padding
        private long _p0, _p1, _p2, _p3, _p4, _p5, _p6;
#pragma warning restore CS0169, IDE0051
        public int Lock;
        public volatile int Count;
        public Slot[] Slots = new Slot[InitialSlots];
#pragma warning disable CS0169, IDE0051
        private long _q0, _q1, _q2, _q3, _q4, _q5, _q6;
#pragma warning restore CS0169, IDE0051

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Enter()
        {
            if (Interlocked.CompareExchange(ref Lock, 1, 0) != 0)
            {
                EnterContended();
            }
        }

        [MethodImpl(MethodImplOptions.NoInlining)]
        private void EnterContended()
        {
            var spinner = default(SpinWait);
            while (Volatile.Read(ref Lock) != 0 || Interlocked.CompareExchange(ref Lock, 1, 0) != 0)
            {
                spinner.SpinOnce(sleep1Threshold: -1);
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveInlining)]
        public void Exit() => Volatile.Write(ref Lock, 0);
    }
}
