using System.Runtime.InteropServices;
using System.Text;
using Runtime.Memory;
using Runtime.Memory.Extensions;
using Runtime.Memory.Extensions.Zlib;

namespace Runtime.Host.Lua;

/// <summary>
/// The <c>zlib</c> module of the host's scripts: the system's zlib with every allocation it makes routed into the raw
/// domain under the tag <c>zlib</c> (<see cref="ZlibRouting"/>), so a script's compression shows in the report beside
/// its Lua state.
/// <code>
///  zlib.compress(s, [level])      the zlib stream of s (level 0..9, default 6); nil, message on failure
///  zlib.decompress(z, size)       the size bytes z inflates to; nil, message when z is not a stream of that size
/// </code>
/// Like <see cref="MemoryModule"/>'s, the functions never raise a Lua error: a result Lua cannot allocate is
/// <c>nil, "not enough memory"</c>.
/// </summary>
internal static unsafe class ZlibModule
{
    private static byte[] s_version = [];

    /// <summary>The module for <see cref="LuaProtected.Setup"/> (the global <c>zlib</c>); null when libz.so.1 cannot be loaded.</summary>
    /// <remarks>The functions route their streams through the state's <see cref="LuaStateContext.Zlib"/>.</remarks>
    public static LuaProtected.Module? Open()
    {
        string version;
        try
        {
            version = ZlibNative.EnsureAvailable();
        }
        catch (DllNotFoundException)
        {
            return null;
        }

        s_version = [.. Encoding.ASCII.GetBytes(version), 0];
        return new LuaProtected.Module("zlib",
        [
            ("compress", (nint)(delegate* unmanaged<nint, int>)&Compress),
            ("decompress", (nint)(delegate* unmanaged<nint, int>)&Decompress),
        ]);
    }

    private static ReadOnlySpan<byte> StringArgument(nint l, int index)
    {
        if (LuaApi.lua_type(l, index) != LuaApi.TypeString)
        {
            return null;
        }

        nuint length;
        byte* text = LuaApi.lua_tolstring(l, index, &length);
        return new ReadOnlySpan<byte>(text, checked((int)length));
    }

    [UnmanagedCallersOnly]
    private static int Compress(nint l)
    {
        try
        {
            if (LuaApi.lua_type(l, 1) != LuaApi.TypeString || LuaApi.OptInteger(l, 2, 6) is not { } level || level is < 0 or > 9)
            {
                return MemoryModule.Fail(l, "zlib.compress: expects a string and an optional level from 0 to 9");
            }

            ReadOnlySpan<byte> input = StringArgument(l, 1);
            byte[] output = new byte[input.Length + (input.Length / 1000) + 64]; // deflateBound's margin, rounded up
            ZStream stream = default;
            LuaStateContext.Of(l).Zlib!.Attach(&stream);
            fixed (byte* version = s_version)
            fixed (byte* source = input)
            fixed (byte* target = output)
            {
                int status = ZlibNative.DeflateInit2(&stream, (int)level, ZlibNative.Deflated, 15, 8, 0, version, sizeof(ZStream));
                if (status != ZlibNative.Ok)
                {
                    return MemoryModule.Fail(l, $"zlib.compress: deflateInit2_ returned {status}");
                }

                stream.NextIn = source;
                stream.AvailIn = (uint)input.Length;
                stream.NextOut = target;
                stream.AvailOut = (uint)output.Length;
                status = ZlibNative.Deflate(&stream, ZlibNative.Finish);
                int written = output.Length - (int)stream.AvailOut;
                ZlibNative.DeflateEnd(&stream);
                if (status != ZlibNative.StreamEnd)
                {
                    return MemoryModule.Fail(l, $"zlib.compress: deflate returned {status}");
                }

                return MemoryModule.Return(l, output.AsSpan(0, written));
            }
        }
        catch (Exception ex)
        {
            return MemoryModule.Fail(l, "zlib.compress: " + ex.Message);
        }
    }

    [UnmanagedCallersOnly]
    private static int Decompress(nint l)
    {
        try
        {
            if (LuaApi.lua_type(l, 1) != LuaApi.TypeString || LuaApi.OptInteger(l, 2, -1) is not { } size || size is < 0 or > int.MaxValue)
            {
                return MemoryModule.Fail(l, "zlib.decompress: expects a string and the size it inflates to");
            }

            ReadOnlySpan<byte> input = StringArgument(l, 1);
            byte[] output = new byte[size];
            ZStream stream = default;
            LuaStateContext.Of(l).Zlib!.Attach(&stream);
            fixed (byte* version = s_version)
            fixed (byte* source = input)
            fixed (byte* target = output)
            {
                int status = ZlibNative.InflateInit2(&stream, 15, version, sizeof(ZStream));
                if (status != ZlibNative.Ok)
                {
                    return MemoryModule.Fail(l, $"zlib.decompress: inflateInit2_ returned {status}");
                }

                stream.NextIn = source;
                stream.AvailIn = (uint)input.Length;
                stream.NextOut = target;
                stream.AvailOut = (uint)output.Length;
                status = ZlibNative.Inflate(&stream, ZlibNative.Finish);
                bool whole = status == ZlibNative.StreamEnd && stream.AvailOut == 0;
                ZlibNative.InflateEnd(&stream);
                if (!whole)
                {
                    return MemoryModule.Fail(l, $"zlib.decompress: not a zlib stream of {size} bytes (inflate returned {status})");
                }

                return MemoryModule.Return(l, output);
            }
        }
        catch (Exception ex)
        {
            return MemoryModule.Fail(l, "zlib.decompress: " + ex.Message);
        }
    }
}
