using System.Text;
using Runtime.Memory.Tracing;

namespace Runtime.Host.Lua;

/// <summary>
/// The tracer's frames in Lua terms: the Lua call stack of the state this thread is running, read with
/// <c>lua_getstack</c> and <c>lua_getinfo(L, "Sln")</c> at each traced allocation, so statistics and leak reports
/// group by script file and line.
/// </summary>
/// <remarks>
/// <para>Only Lua functions are frames: a C function (<c>string.rep</c>, <c>table.insert</c>) that allocates is
/// charged to the Lua line that called it, which is what a script author can change. They still count in the total
/// depth.</para>
/// <para>The provider reads a state only between <see cref="Enter"/> and the dispose of its scope (the host wraps each
/// <c>lua_pcall</c> in one): never while the state is being created or closed, and never while one of its blocks is
/// being resized (<see cref="Memory.Extensions.LuaRouting.IsResizing"/>: the block may be the stack Lua is moving); a
/// resize is charged to the frames read last in the same scope (unknown when there are none). A coroutine allocates on its own
/// <c>lua_State</c>, which this provider does not see; its allocations are charged to the <c>coroutine.resume</c> line
/// of the state that resumed it.</para>
/// <para>A call costs the frames kept, not the depth of the stack: it examines at most the frames asked for plus
/// <see cref="IFrameProvider.Lookahead"/> levels (C functions count), each in O(1), and reports a deeper stack's total
/// as a lower bound (see <see cref="IFrameProvider"/>). A script 100,000 calls deep traces as fast as one 10 deep.</para>
/// <para>No managed allocation per call once a script's file and function names are known: names are interned by
/// their Lua string's address, checked against the bytes (a collected string's address can be reused).</para>
/// </remarks>
internal sealed unsafe class LuaFrameProvider : IFrameProvider
{
    [ThreadStatic]
    private static nint t_state;

    // The frames this thread read last (up to MaxRemembered), given again while a block is being resized.
    private const int MaxRemembered = 64;

    [ThreadStatic]
    private static Frame[]? t_last;

    [ThreadStatic]
    private static int t_lastCount;

    [ThreadStatic]
    private static int t_lastTotal;

    // The scope (Enter) and the levels examined (frames asked + Lookahead) of those frames: they stand only for that
    // scope's state (a state's address is reused by the next one), and a total capped at one limit says nothing about
    // another.
    [ThreadStatic]
    private static long t_scope;

    [ThreadStatic]
    private static long t_lastScope;

    [ThreadStatic]
    private static int t_lastLimit;

    // Each thread's names (a state runs on one thread at a time): no lock on the traced allocation path.
    [ThreadStatic]
    private static Interned?[]? t_names;

    [ThreadStatic]
    private static int t_next;

    private sealed class Interned(nint address, byte[] bytes, string text)
    {
        public readonly nint Address = address;
        public readonly byte[] Bytes = bytes;
        public readonly string Text = text;
    }

    /// <summary>Lets the provider read <paramref name="state"/> on this thread until the scope is disposed.</summary>
    public static Scope Enter(nint state)
    {
        nint previous = t_state;
        t_state = state;
        t_scope++; // the frames read so far stand for another scope
        return new Scope(previous);
    }

    /// <summary>Restores the state the thread ran before (none, or the outer one).</summary>
    public readonly struct Scope(nint previous) : IDisposable
    {
        public void Dispose()
        {
            t_state = previous;
            t_scope++;
        }
    }

    /// <inheritdoc/>
    public int GetFrames(Span<Frame> frames, out int totalFrames)
    {
        nint state = t_state;
        totalFrames = 0;
        if (state == 0)
        {
            return 0;
        }

        Frame[] last = t_last ??= new Frame[MaxRemembered];
        if (Memory.Extensions.LuaRouting.IsResizing)
        {
            // A block of the state is being resized (a table's array, a buffer, or a stack Lua is moving, whose frames
            // are offsets meanwhile): charged to the frames read last on this thread, without reading the stack.
            // Only frames read in this scope, and a capped total only at the same limit; else unknown.
            if (t_lastScope != t_scope || (t_lastTotal > t_lastLimit && t_lastLimit != frames.Length + IFrameProvider.Lookahead))
            {
                return 0;
            }

            int n = Math.Min(Math.Min(t_lastCount, frames.Length), MaxRemembered);
            last.AsSpan(0, n).CopyTo(frames);
            totalFrames = t_lastTotal;
            return n;
        }

        // At most frames.Length + Lookahead levels are examined (C functions included, so a run of them cannot make the
        // walk unbounded), then one more is probed to learn whether the stack goes deeper: the cost is bounded by the
        // frames kept, never by the depth. Each step to the caller's level is O(1) (Next).
        int limit = frames.Length + IFrameProvider.Lookahead;
        int written = 0;
        LuaApi.Debug ar;
        byte* what = stackalloc byte[] { (byte)'S', (byte)'l', (byte)'n', 0 };
        if (LuaApi.lua_getstack(state, 0, &ar) == 0)
        {
            return 0;
        }

        for (int level = 0; ; level++)
        {
            if (level == limit)
            {
                totalFrames = limit + 1; // deeper than the provider looks: "at least limit + 1" (IFrameProvider)
                break;
            }

            totalFrames++;
            if (written < frames.Length && Read(state, what, &ar, out Frame frame))
            {
                frames[written++] = frame;
            }

            if (!Next(state, level, &ar))
            {
                break;
            }
        }

        int remembered = Math.Min(written, MaxRemembered);
        frames[..remembered].CopyTo(last);
        t_lastCount = remembered;
        t_lastTotal = totalFrames;
        t_lastScope = t_scope;
        t_lastLimit = limit;
        return written;
    }

    /// <summary>The frame of the level in <paramref name="ar"/> (as <c>lua_getstack</c> left it); false for a C function,
    /// which is counted but not written.</summary>
    private static bool Read(nint state, byte* what, LuaApi.Debug* ar, out Frame frame)
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
            ? Intern(ar->Source + 1, (int)ar->SourceLength - 1)
            : Intern(ar->ShortSource, ShortSourceLength(ar->ShortSource));
        string? function = ar->Name != null ? Intern(ar->Name, StrLen(ar->Name)) : ar->What[0] == (byte)'m' ? "<main>" : null;
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

    private static int StrLen(byte* s)
    {
        int n = 0;
        while (s[n] != 0)
        {
            n++;
        }

        return n;
    }

    /// <summary>The string for the <paramref name="length"/> bytes at <paramref name="text"/>, made once per name.</summary>
    private static string Intern(byte* text, int length)
    {
        var bytes = new ReadOnlySpan<byte>(text, length);
        Interned?[] names = t_names ??= new Interned?[64];
        foreach (Interned? entry in names)
        {
            if (entry is not null && (entry.Address == (nint)text || entry.Bytes.Length == length) && bytes.SequenceEqual(entry.Bytes))
            {
                return entry.Text;
            }
        }

        var made = new Interned((nint)text, bytes.ToArray(), Encoding.UTF8.GetString(bytes));
        names[t_next] = made;
        t_next = (t_next + 1) % names.Length;
        return made.Text;
    }
}
