using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Host;

/// <summary>
/// Tracing at any stack depth (issue 26, point 2): a traced allocation costs the frames kept, not the depth of the Lua
/// stack, so a script that allocates 100,000 calls deep, or overflows its stack inside an xpcall message handler, runs
/// traced (exact or sampled) about as fast as untraced. Before, each traced allocation walked the stack with one
/// <c>lua_getstack</c> per level, each from the top: quadratic in the depth, minutes for these runs.
/// </summary>
public sealed class HostDeepStackTests : IDisposable
{
    private const string Host = "Runtime.Host";

    // Untraced, each run takes well under a second; the limit leaves room for a loaded machine, not for a walk per level.
    private static readonly TimeSpan Limit = TimeSpan.FromSeconds(30);
    private readonly string _dir = Directory.CreateTempSubdirectory("runtimemem-deep-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Modes => new()
    {
        "--RuntimeMemory:Tracing:SampleBytes=0",
        "--RuntimeMemory:Tracing:SampleBytes=524288",
    };

    private ChildProcess.Result Run(string script, string source, params string[] args)
    {
        File.WriteAllText(Path.Combine(_dir, script), source);
        return ChildProcess.RunIn(_dir, Host, new Dictionary<string, string>(), Limit, args);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void Tables_built_100000_calls_deep_are_traced_in_bounded_time(string mode)
    {
        ChildProcess.Result run = Run("deep.lua", """
            local keep = {}
            local function rec(d)
              if d == 0 then
                for i = 1, 20000 do keep[i] = { i } end
                return #keep
              end
              local n = rec(d - 1) -- not a tail call: the stack is 100,000 Lua frames deep
              return n
            end
            print(rec(100000))
            print(memory.is_tracing())
            """, "--RuntimeMemory:Tracing:Enabled=true", mode, "deep.lua");
        Assert.Equal("", run.Stderr);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("20000\ntrue\n", run.Stdout);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void A_stack_overflow_in_an_xpcall_message_handler_is_traced_in_bounded_time(string mode)
    {
        // The handler overflows too: Lua grows the stack to its limit (about 200,000 levels), reallocating it as it goes,
        // and every traced (or sampled) reallocation used to walk all the levels, each from the top.
        ChildProcess.Result run = Run("xpcall.lua", """
            local function loop(x, y, z) return 1 + loop(x, y, z) end
            print(xpcall(loop, loop))
            """, "--RuntimeMemory:Tracing:Enabled=true", mode, "xpcall.lua");
        Assert.Equal("", run.Stderr);
        Assert.Equal(0, run.ExitCode);
        Assert.Equal("false\terror in error handling\n", run.Stdout);
    }
}
