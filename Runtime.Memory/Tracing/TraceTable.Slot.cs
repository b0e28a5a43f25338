namespace Runtime.Memory.Tracing;

// The record of one trace: what the table hands out (Copy, TryGet, Remove), what a shadow word decodes to
// (TraceTable.Shadow.cs), and a stripe's slot, 32 bytes held inline in its array (TraceTable.Stripes.cs), empty
// when its address is 0. A stripe's slots are written only under that stripe's lock.
internal sealed partial class TraceTable
{
    /// <summary>One slot: a trace, or empty when <see cref="Address"/> is 0.</summary>
    internal struct Slot
    {
        public nuint Address;
        public uint Domain;
        public int Traceback;
        public long EstimatedSize;
        public long EstimatedCount;
    }
}
