using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;
using Runtime.Memory.Tracing;
using Runtime.Memory.Extensions.Lua;

namespace Runtime.Host.Lua;

/// <summary>
/// The tracer's frames in Lua terms: the Lua call stack of the state this thread is running, read with
/// <c>lua_getstack</c> and <c>lua_getinfo(L, "Sl")</c> at each traced allocation, so statistics and leak reports
/// group by script file and line.
/// </summary>
/// <remarks>
/// <para>Only Lua functions are frames: a C function (<c>string.rep</c>, <c>table.insert</c>) that allocates is
/// charged to the Lua line that called it, which is what a script author can change. They still count in the total
/// depth.</para>
/// <para>The provider reads a state only between <see cref="Enter"/> and the dispose of its scope (the host wraps each
/// <c>lua_pcall</c> in one): never while the state is being created or closed, and never while one of its blocks is
/// being resized (<see cref="Memory.Extensions.Lua.LuaRouting.IsResizing"/>: the block may be the stack Lua is moving); a
/// resize is charged to the frames read last in the same scope (unknown when there are none). A coroutine allocates on its own
/// <c>lua_State</c>, which this provider does not see; its allocations are charged to the <c>coroutine.resume</c> line
/// of the state that resumed it.</para>
/// <para>A call costs the frames kept, not the depth of the stack: it examines at most the frames asked for plus
/// <see cref="IFrameProvider.Lookahead"/> levels, each in O(1), and reports a deeper stack's total as a lower bound
/// (see <see cref="IFrameProvider"/>). A script 100,000 calls deep traces as fast as one 10 deep. C functions count
/// against those levels, so a stack that alternates Lua and C functions (recursion through <c>pcall</c>) may give fewer
/// frames than the tracer keeps, never an unbounded walk.</para>
/// <para>A frame's function is named by where it is defined, as Lua's own tracebacks name a function they have no
/// global name for: <c>function &lt;demo.lua:12&gt;</c> (the main chunk is <c>&lt;main&gt;</c>). Not by how it was
/// called (<c>lua_getinfo</c>'s <c>n</c>): that name depends on the call site (the same function is "local 'f'" here
/// and "field 'g'" there), so it would split one site into several, and finding it costs a symbolic execution of the
/// caller's bytecode on every traced allocation.</para>
/// <para>No managed allocation per call once a script's file and function names are known: names are interned by
/// their Lua string's address, checked against the bytes (a collected string's address can be reused).</para>
/// </remarks>
internal sealed unsafe class LuaFrameProvider : IFrameProvider
{
    // The frames a thread read last (up to MaxRemembered), given again while a block is being resized.
    private const int MaxRemembered = 64;

    // Everything the provider keeps per thread, in one object: one thread-static read per traced allocation.
    [ThreadStatic]
    private static PerThread? t_thread;

    private static PerThread Current => t_thread ??= new PerThread();

    private sealed class PerThread
    {
        /// <summary>The state this thread runs now (0: none).</summary>
        public nint State;

        /// <summary>Advanced by every <see cref="Enter"/> and scope dispose: frames read in another scope stand for another
        /// state (a state's address is reused by the next one).</summary>
        public long Scope;

        public readonly Frame[] Last = new Frame[MaxRemembered];
        public int LastCount;
        public int LastTotal;
        public long LastScope = -1;

        /// <summary>The levels examined (frames asked + Lookahead) for the last frames: a total capped at one limit says
        /// nothing about another.</summary>
        public int LastLimit;

        // Each thread's names (a state runs on one thread at a time): no lock on the traced allocation path.
        public readonly Interned?[] Names = new Interned?[64];
        public int NextName;

        // Each thread's function names, "function <file:line>", by the interned file and the line of definition.
        public readonly (string File, int Line, string Name)[] Functions = new (string, int, string)[64];
        public int NextFunction;
    }

    private sealed class Interned(nint address, byte[] bytes, string text)
    {
        public readonly nint Address = address;
        public readonly byte[] Bytes = bytes;
        public readonly string Text = text;
    }

    /// <summary>Lets the provider read <paramref name="state"/> on this thread until the scope is disposed.</summary>
    public static Scope Enter(nint state)
    {
        PerThread thread = Current;
        nint previous = thread.State;
        thread.State = state;
        thread.Scope++; // the frames read so far stand for another scope
        return new Scope(previous);
    }

    /// <summary>Restores the state the thread ran before (none, or the outer one).</summary>
    public readonly struct Scope(nint previous) : IDisposable
    {
        public void Dispose()
        {
            PerThread thread = Current;
            thread.State = previous;
            thread.Scope++;
        }
    }

    /// <inheritdoc/>
    public int GetFrames(Span<Frame> frames, out int totalFrames)
    {
        totalFrames = 0;
        if (t_thread is not { State: not 0 } thread || frames.IsEmpty)
        {
            return 0;
        }

        nint state = thread.State;

        int limit = frames.Length + IFrameProvider.Lookahead;
        if (Memory.Extensions.Lua.LuaRouting.IsResizing)
        {
            // A block of the state is being resized (a table's array, a buffer, or a stack Lua is moving, whose frames
            // are offsets meanwhile): charged to the frames read last on this thread, without reading the stack.
            // Only frames read in this scope, and a capped total only at the same limit; else unknown.
            if (thread.LastScope != thread.Scope || (thread.LastTotal > thread.LastLimit && thread.LastLimit != limit))
            {
                return 0;
            }

            int n = Math.Min(Math.Min(thread.LastCount, frames.Length), MaxRemembered);
            thread.Last.AsSpan(0, n).CopyTo(frames);
            totalFrames = thread.LastTotal;
            return n;
        }

        // At most frames.Length + Lookahead levels are examined (C functions included, so a run of them cannot make the
        // walk unbounded), then one more is probed to learn whether the stack goes deeper: the cost is bounded by the
        // frames kept, never by the depth. Each step to the caller's level is O(1) (Next, or the link itself).
        int written = 0;
        LuaApi.Debug ar;
        byte* what = stackalloc byte[] { (byte)'S', (byte)'l', 0 };
        if (LuaApi.lua_getstack(state, 0, &ar) == 0)
        {
            return 0;
        }

        int level = 0;
        while (true)
        {
            totalFrames++;
            if (Read(state, what, &ar, thread, out Frame frame))
            {
                frames[written++] = frame;
            }

            if (!Next(state, level, &ar))
            {
                break; // the bottom: the total is exact
            }

            if (++level == limit)
            {
                totalFrames = limit + 1; // deeper than the provider looks: "at least limit + 1" (IFrameProvider)
                break;
            }

            if (written == frames.Length)
            {
                // The frames are written: the rest is counting. By the links, a tight loop of loads.
                totalFrames = Volatile.Read(ref s_layout) > 0 ? CountByLinks(ar.CallInfo, level, limit) : CountByGetStack(state, level, limit, &ar);
                break;
            }
        }

        int remembered = Math.Min(written, MaxRemembered);
        frames[..remembered].CopyTo(thread.Last);
        thread.LastCount = remembered;
        thread.LastTotal = totalFrames;
        thread.LastScope = thread.Scope;
        thread.LastLimit = limit;
        return written;
    }

    /// <summary>The levels from 0 to the bottom, counting from <paramref name="level"/> (the level of
    /// <paramref name="ci"/>, which exists), up to <paramref name="limit"/>; limit + 1 when there are more.</summary>
    private static int CountByLinks(nint ci, int level, int limit)
    {
        while (true)
        {
            nint previous = *(nint*)(ci + PreviousOffset);
            if (previous == 0 || *(nint*)(previous + PreviousOffset) == 0)
            {
                return level + 1;
            }

            ci = previous;
            if (++level == limit)
            {
                return limit + 1;
            }
        }
    }

    /// <summary><see cref="CountByLinks"/> with <c>lua_getstack</c> (O(level) each, bounded by the limit).</summary>
    private static int CountByGetStack(nint state, int level, int limit, LuaApi.Debug* ar)
    {
        while (Next(state, level, ar))
        {
            if (++level == limit)
            {
                return limit + 1;
            }
        }

        return level + 1;
    }

    /// <summary>The frame of the level in <paramref name="ar"/> (as <c>lua_getstack</c> left it); false for a C function,
    /// which is counted but not written.</summary>
    private static bool Read(nint state, byte* what, LuaApi.Debug* ar, PerThread thread, out Frame frame)
    {
        frame = default;
        nint ci = ar->CallInfo; // lua_getinfo may write every field: the walk needs the level back
        if (LuaApi.lua_getinfo(state, what, ar) == 0 || ar->What == null || ar->What[0] == (byte)'C')
        {
            ar->CallInfo = ci;
            return false;
        }

        ar->CallInfo = ci;
        string file = ar->Source != null && ar->SourceLength > 0 && (ar->Source[0] == (byte)'@' || ar->Source[0] == (byte)'=')
            ? Intern(thread, ar->Source + 1, (int)ar->SourceLength - 1)
            : Intern(thread, ar->ShortSource, ShortSourceLength(ar->ShortSource));
        string function = ar->What[0] == (byte)'m' ? "<main>" : DefinedAt(thread, file, ar->LineDefined);
        frame = new Frame(file, ar->CurrentLine, function);
        return true;
    }

    // Lua 5.4's CallInfo (lstate.h) begins { StkIdRel func; StkIdRel top; struct CallInfo *previous, *next; ... }: the
    // caller's CallInfo is its third word, in every 5.4 release (func and top are one word each: a pointer before 5.4.6,
    // a union of a pointer and an offset since). The list ends at the state's base_ci, the only CallInfo whose previous
    // is NULL. lua_getstack(L, n) walks n of these links from the top, so a walk calling it per level is quadratic in
    // the depth; following one link per level is what it does, one level at a time.
    private static readonly int PreviousOffset = 2 * sizeof(nint);

    // Whether the layout above is the library's: 0 not checked yet, 1 checked (follow the links), −1 it is not (call
    // lua_getstack per level: O(level) each, still bounded by the levels examined). Checked once per process, against
    // lua_getstack itself, at the first stack two levels deep.
    private static int s_layout;

    /// <summary>How the walk steps to a caller (for tests): 1 by the CallInfo link, −1 by lua_getstack, 0 not known yet.</summary>
    internal static int Layout => Volatile.Read(ref s_layout);

    /// <summary>Moves <paramref name="ar"/> from <paramref name="level"/> to the caller's level; false at the bottom.</summary>
    private static bool Next(nint state, int level, LuaApi.Debug* ar)
    {
        int layout = Volatile.Read(ref s_layout);
        if (layout > 0)
        {
            nint previous = *(nint*)(ar->CallInfo + PreviousOffset);
            if (previous == 0 || *(nint*)(previous + PreviousOffset) == 0)
            {
                return false; // previous is base_ci (or the list ends): no level there, as lua_getstack says
            }

            ar->CallInfo = previous;
            return true;
        }

        nint current = ar->CallInfo;
        if (LuaApi.lua_getstack(state, level + 1, ar) == 0)
        {
            return false;
        }

        if (layout == 0)
        {
            // lua_getstack found the caller: is it the link the layout says? (A CallInfo is far larger than three words,
            // so reading the third word of one is safe whatever the layout.)
            Volatile.Write(ref s_layout, *(nint*)(current + PreviousOffset) == ar->CallInfo ? 1 : -1);
        }

        return true;
    }

    private static int ShortSourceLength(byte* s)
    {
        int n = 0;
        while (n < 60 && s[n] != 0)
        {
            n++;
        }

        return n;
    }

    /// <summary><c>function &lt;file:line&gt;</c> for a function defined at <paramref name="line"/> of <paramref name="file"/>
    /// (an interned string, compared by reference), made once per function.</summary>
    private static string DefinedAt(PerThread thread, string file, int line)
    {
        (string File, int Line, string Name)[] functions = thread.Functions;
        foreach ((string File, int Line, string Name) entry in functions)
        {
            if (entry.Line == line && ReferenceEquals(entry.File, file))
            {
                return entry.Name;
            }
        }

        string name = $"function <{file}:{line}>";
        functions[thread.NextFunction] = (file, line, name);
        thread.NextFunction = (thread.NextFunction + 1) % functions.Length;
        return name;
    }

    /// <summary>
    /// Whether two names are the same bytes, compared eight at a time in general-purpose registers, not with
    /// <c>SequenceEqual</c>, which compares 32 bytes or more in 256-bit vector registers. This runs inside Lua's
    /// allocation callback on every traced allocation, and with that wide compare on the path exact tracing of a script
    /// whose path was 32 characters or more ran about twice as slow in every process on the benchmark VM
    /// (<c>DOTNET_EnableAVX2=0</c> made the difference vanish; the mechanism was not established): see
    /// <c>docs/BENCHMARKS.md</c>. Keep wide vector code off the per-allocation path of native callbacks.
    /// </summary>
    private static bool SameBytes(ReadOnlySpan<byte> a, byte[] b)
    {
        if (a.Length != b.Length)
        {
            return false;
        }

        ref byte x = ref MemoryMarshal.GetReference(a);
        ref byte y = ref MemoryMarshal.GetArrayDataReference(b);
        int i = 0;
        for (; i + sizeof(ulong) <= a.Length; i += sizeof(ulong))
        {
            if (Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref x, i))
                != Unsafe.ReadUnaligned<ulong>(ref Unsafe.Add(ref y, i)))
            {
                return false;
            }
        }

        for (; i < a.Length; i++)
        {
            if (Unsafe.Add(ref x, i) != Unsafe.Add(ref y, i))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>The string for the <paramref name="length"/> bytes at <paramref name="text"/>, made once per name.</summary>
    private static string Intern(PerThread thread, byte* text, int length)
    {
        var bytes = new ReadOnlySpan<byte>(text, length);
        Interned?[] names = thread.Names;
        foreach (Interned? entry in names)
        {
            if (entry is not null && (entry.Address == (nint)text || entry.Bytes.Length == length) && SameBytes(bytes, entry.Bytes))
            {
                return entry.Text;
            }
        }

        var made = new Interned((nint)text, bytes.ToArray(), Encoding.UTF8.GetString(bytes));
        names[thread.NextName] = made;
        thread.NextName = (thread.NextName + 1) % names.Length;
        return made.Text;
    }
}
