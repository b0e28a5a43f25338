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
/// resize is charged to the frames read last. A coroutine allocates on its own
/// <c>lua_State</c>, which this provider does not see; its allocations are charged to the <c>coroutine.resume</c> line
/// of the state that resumed it.</para>
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
        return new Scope(previous);
    }

    /// <summary>Restores the state the thread ran before (none, or the outer one).</summary>
    public readonly struct Scope(nint previous) : IDisposable
    {
        public void Dispose() => t_state = previous;
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
            int n = Math.Min(Math.Min(t_lastCount, frames.Length), MaxRemembered);
            last.AsSpan(0, n).CopyTo(frames);
            totalFrames = t_lastTotal;
            return n;
        }

        int written = 0;
        LuaApi.Debug ar;
        byte* what = stackalloc byte[] { (byte)'S', (byte)'l', (byte)'n', 0 };
        for (int level = 0; LuaApi.lua_getstack(state, level, &ar) != 0; level++)
        {
            totalFrames++;
            if (written == frames.Length || LuaApi.lua_getinfo(state, what, &ar) == 0 || ar.What == null || ar.What[0] == (byte)'C')
            {
                continue; // counted, not written: past the limit, or a C function
            }

            string file = ar.Source != null && ar.SourceLength > 0 && (ar.Source[0] == (byte)'@' || ar.Source[0] == (byte)'=')
                ? Intern(ar.Source + 1, (int)ar.SourceLength - 1)
                : Intern(ar.ShortSource, ShortSourceLength(ar.ShortSource));
            string? function = ar.Name != null ? Intern(ar.Name, StrLen(ar.Name)) : ar.What[0] == (byte)'m' ? "<main>" : null;
            frames[written++] = new Frame(file, ar.CurrentLine, function);
        }

        int remembered = Math.Min(written, MaxRemembered);
        frames[..remembered].CopyTo(last);
        t_lastCount = remembered;
        t_lastTotal = totalFrames;
        return written;
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
