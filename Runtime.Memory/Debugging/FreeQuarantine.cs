using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Runtime.Memory.Tracing;

namespace Runtime.Memory.Debugging;

/// <summary>A freed guard-byte block held back from the allocator below, filled with 0xDD.</summary>
internal readonly struct QuarantinedBlock(nuint data, nuint size, ulong serial, Traceback? allocated, Traceback? freed)
{
    /// <summary>The block's data pointer (its extent starts <see cref="DebugLayout.HeaderSize"/> bytes below).</summary>
    public readonly nuint Data = data;

    /// <summary>The size requested.</summary>
    public readonly nuint Size = size;

    /// <summary>The serial number the block was made with.</summary>
    public readonly ulong Serial = serial;

    /// <summary>Where it was allocated, when tracing knew it.</summary>
    public readonly Traceback? Allocated = allocated;

    /// <summary>Where it was freed, when tracing was on.</summary>
    public readonly Traceback? Freed = freed;

    /// <summary>Bytes it holds back from the allocator below: the data and the guard bytes.</summary>
    public nuint Bytes => Size + DebugLayout.Overhead;
}

/// <summary>
/// The quarantine of one domain's debug hook (guard-byte mode): freed blocks, filled with 0xDD, held back from the
/// allocator below in FIFO order until the bytes they hold exceed <see cref="Capacity"/>; the oldest then leaves, its
/// fill is checked (a changed byte is a <see cref="MemoryViolationKind.WriteAfterFree"/>), and it is freed below.
/// </summary>
/// <remarks>
/// <para><b>Lock.</b> A spin lock, taken twice per free (reserve and pop what must leave; enqueue), each time for a few
/// loads and stores: no fill is checked and nothing is freed under it. (<see cref="Lock"/> cost about 35 ns a free here.)</para>
/// <para><b>Order.</b> Room is made (and the leaving blocks checked) before the block being freed is accepted, so that a
/// report that throws (<see cref="ViolationAction.Throw"/>) leaves that block live and untouched, as every other report
/// does; its bytes are reserved meanwhile, so the bound holds with frees racing on other threads.</para>
/// </remarks>
internal sealed unsafe class FreeQuarantine
{
    private readonly Queue<QuarantinedBlock> _blocks = new();
    private int _lock; // a spin lock: every critical section is a few loads and stores (no fill is checked under it)
    private long _bytes; // quarantined and reserved, under _lock
    private long _reserved; // reserved by frees in flight, under _lock

    [ThreadStatic]
    private static List<QuarantinedBlock>? t_more;

    public FreeQuarantine(long capacity) => Capacity = capacity;

    /// <summary>The bound, in bytes (data and guard bytes).</summary>
    public long Capacity { get; }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Enter()
    {
        if (Interlocked.CompareExchange(ref _lock, 1, 0) != 0)
        {
            EnterContended();
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void EnterContended()
    {
        var spin = default(SpinWait);
        do
        {
            spin.SpinOnce(); // yields, then sleeps, when the holder is descheduled
        }
        while (Volatile.Read(ref _lock) != 0 || Interlocked.CompareExchange(ref _lock, 1, 0) != 0);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Exit() => Volatile.Write(ref _lock, 0);

    /// <summary>Bytes held now.</summary>
    public long Bytes
    {
        get
        {
            Enter();
            long bytes = _bytes - _reserved;
            Exit();
            return bytes;
        }
    }

    /// <summary>Blocks held now.</summary>
    public int Count
    {
        get
        {
            Enter();
            int count = _blocks.Count;
            Exit();
            return count;
        }
    }

    /// <summary>Whether a block of <paramref name="size"/> data bytes is quarantined at all (else freed at once).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool Takes(nuint size) => (ulong)(size + DebugLayout.Overhead) <= (ulong)Capacity;

    /// <summary>
    /// Reserves room for a block of <paramref name="bytes"/> and pops the oldest blocks that must leave to make it:
    /// returns how many, the first in <paramref name="first"/> and any others in <paramref name="more"/> (a list of this
    /// thread's). The caller checks and frees them (<see cref="DebugHook"/>), then <see cref="Commit"/>s or
    /// <see cref="Unreserve"/>s. <paramref name="next"/> is the block that will leave next (0 for none), to prefetch.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Reserve(nuint bytes, out QuarantinedBlock first, out List<QuarantinedBlock>? more, out nuint next)
    {
        first = default;
        more = null;
        int leaving = 0;
        Enter();
        _bytes += (long)bytes;
        _reserved += (long)bytes;
        if (_bytes > Capacity && _blocks.Count > 0)
        {
            first = _blocks.Dequeue();
            _bytes -= (long)first.Bytes;
            leaving = 1;
            while (_bytes > Capacity && _blocks.Count > 0)
            {
                if (more is null)
                {
                    more = t_more ??= [];
                    more.Clear();
                }

                QuarantinedBlock another = _blocks.Dequeue();
                _bytes -= (long)another.Bytes;
                more.Add(another);
                leaving++;
            }
        }

        next = _blocks.TryPeek(out QuarantinedBlock oldest) ? oldest.Data : 0;
        Exit();
        return leaving;
    }

    /// <summary>Gives back a reservation whose block was not freed after all.</summary>
    public void Unreserve(nuint bytes)
    {
        Enter();
        _bytes -= (long)bytes;
        _reserved -= (long)bytes;
        Exit();
    }

    /// <summary>Puts a freed block, already filled, in the room reserved for it.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void Commit(in QuarantinedBlock block)
    {
        Enter();
        _reserved -= (long)block.Bytes;
        _blocks.Enqueue(block);
        Exit();
    }

    /// <summary>Takes every block out (a flush), oldest first.</summary>
    public QuarantinedBlock[] TakeAll()
    {
        Enter();
        QuarantinedBlock[] all = _blocks.ToArray(); // allocates: a flush is rare, and the lock is held for a copy only
        _blocks.Clear();
        _bytes = _reserved;
        Exit();
        return all;
    }

    /// <summary>The blocks held now, oldest first (a copy: for diagnostics and tests).</summary>
    internal QuarantinedBlock[] Peek()
    {
        Enter();
        try
        {
            return _blocks.ToArray();
        }
        finally
        {
            Exit();
        }
    }

    /// <summary>The quarantined block at <paramref name="data"/>, for a report (a scan: cold).</summary>
    public bool TryFind(nuint data, out QuarantinedBlock found)
    {
        foreach (QuarantinedBlock block in Peek()) // a report is cold: copy under the lock, search outside it
        {
            if (block.Data == data)
            {
                found = block;
                return true;
            }
        }

        found = default;
        return false;
    }

    /// <summary>
    /// The offset from the data pointer of the first byte of the block's extent (guard bytes included) that is not
    /// 0xDD, or null when the fill is intact.
    /// </summary>
    public static long? FirstChanged(in QuarantinedBlock block)
    {
        byte* start = (byte*)block.Data - DebugLayout.HeaderSize;
        nuint length = block.Bytes;
        nuint done = 0;
        while (done < length)
        {
            int chunk = (int)Math.Min(length - done, (nuint)int.MaxValue);
            int at = new ReadOnlySpan<byte>(start + done, chunk).IndexOfAnyExcept(DebugLayout.DeadByte);
            if (at >= 0)
            {
                return (long)(done + (nuint)at) - DebugLayout.HeaderSize;
            }

            done += (nuint)chunk;
        }

        return null;
    }

    /// <summary>The report of a write after free found in <paramref name="block"/> at <paramref name="offset"/>.</summary>
    public static MemoryViolation Report(in QuarantinedBlock block, long offset, MemoryOperation operation, MemoryDomainKind domain)
    {
        byte* p = (byte*)block.Data;
        var text = new StringBuilder();
        string where = Where(offset, block.Size);
        text.Append(CultureInfo.InvariantCulture,
            $"Memory violation in {ViolationReport.OperationName(operation)} through the {domain.ToName()} domain: write after free (a byte of a freed block changed while it was in the quarantine, at {where}).\n");
        text.Append(CultureInfo.InvariantCulture, $"Debug memory block at address p={ViolationReport.Address(block.Data)}: API '{(char)domain.ToApiId()}'\n");
        text.Append(CultureInfo.InvariantCulture, $"    {block.Size} bytes originally requested\n");
        text.Append(CultureInfo.InvariantCulture, $"    The block was made by call #{block.Serial} to debug malloc/realloc.\n");
        text.Append("    It was freed and filled with DEADBYTE (0xdd), and held in the quarantine; the first changed byte is\n");
        text.Append(CultureInfo.InvariantCulture, $"    at {where} (offset {offset} from p).\n");

        // Up to 8 bytes each side of the first changed byte, within the block's extent.
        long low = Math.Max(-DebugLayout.HeaderSize, offset - 8);
        long high = Math.Min((long)block.Size + DebugLayout.TrailerSize - 1, offset + 8);
        text.Append(CultureInfo.InvariantCulture, $"    Bytes from {Where(low, block.Size)} to {Where(high, block.Size)}:");
        for (long i = low; i <= high; i++)
        {
            byte b = p[i];
            text.Append(i == offset ? $" [{b:x2}]" : $" {b:x2}");
        }

        text.Append('\n');
        AppendTracebacks(text, block.Allocated, block.Freed);
        return new MemoryViolation(MemoryViolationKind.WriteAfterFree, operation, domain, block.Data, domain, block.Size, block.Serial, text.ToString());
    }

    /// <summary>Where the block was allocated and freed, or how to find out.</summary>
    public static void AppendTracebacks(StringBuilder text, Traceback? allocated, Traceback? freed)
    {
        if (allocated is null && freed is null)
        {
            text.Append("Enable allocation tracing to get the tracebacks where the block was allocated and freed.\n");
            return;
        }

        text.Append(allocated is null
            ? "Memory block allocated at: unknown (not traced)\n"
            : $"Memory block allocated at (most recent call first):\n{string.Join('\n', allocated.Format(mostRecentFirst: true))}\n");
        text.Append(freed is null
            ? "Memory block freed at: unknown (not traced)\n"
            : $"Memory block freed at (most recent call first):\n{string.Join('\n', freed.Format(mostRecentFirst: true))}\n");
    }

    /// <summary>An offset from p as reports name it: <c>p-3</c> in the header, <c>p+5</c> in the data, <c>tail+2</c> after it.</summary>
    private static string Where(long offset, nuint size) =>
        offset < 0 ? $"p{offset}" : offset < (long)size ? $"p+{offset}" : $"tail+{offset - (long)size}";
}
