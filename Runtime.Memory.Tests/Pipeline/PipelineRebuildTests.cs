using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Pipeline;

/// <summary>
/// A domain's pipeline (what its front door calls) is rebuilt on every chain or budget change, under the chain lock,
/// while other threads allocate: each change gives the pipeline of the new shape, and nothing is lost or counted twice.
/// </summary>
public sealed unsafe class PipelineRebuildTests
{
    private sealed class ForwardingHook : MemoryHook
    {
        public override string Name => "forwarding";
    }

    /// <summary>The pipeline's shape as its name says it (e.g. <c>SmallObjectPipeline&lt;NoBudget&gt;</c>).</summary>
    private static string Shape(MemoryDomain domain) => domain.CurrentPipeline.ToString();

    [Fact]
    public void Each_builtin_chain_gets_its_own_pipeline_and_every_change_rebuilds_it()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        MemoryDomain obj = runtime.Obj;
        Assert.Equal("SmallObjectPipeline<NoBudget>", Shape(obj));
        Assert.Equal("SystemPipeline<NoBudget>", Shape(runtime.Raw));

        int builds = obj.PipelineBuilds;
        void Changed(string expected)
        {
            Assert.Equal(expected, Shape(obj));
            Assert.Equal(++builds, obj.PipelineBuilds);
        }

        var hook = new ForwardingHook();
        obj.InstallHook(hook);
        Changed("ContractPipeline<NoBudget>");
        Assert.True(obj.RemoveHook(hook));
        Changed("SmallObjectPipeline<NoBudget>");

        runtime.Tracer.Start();
        Changed("TracedSmallObjectPipeline<NoBudget, ExactTrace>");
        runtime.Tracer.Stop();
        Changed("SmallObjectPipeline<NoBudget>");
        runtime.Tracer.Start(frames: 1, sampleBytes: 4096);
        Changed("TracedSmallObjectPipeline<NoBudget, SampledTrace>");
        runtime.Tracer.Stop();
        Changed("SmallObjectPipeline<NoBudget>");

        obj.MaxBytes = 1L << 30;
        Changed("SmallObjectPipeline<WithBudget>");
        obj.MaxBytes = 2L << 30; // a budget still: same shape, nothing rebuilt
        Assert.Equal(builds, obj.PipelineBuilds);
        obj.MaxBytes = null;
        Changed("SmallObjectPipeline<NoBudget>");

        MemoryAllocator top = obj.Allocator;
        obj.SetAllocator(new ForwardingHook());
        Changed("ContractPipeline<NoBudget>");
        obj.SetAllocator(top);
        Changed("SmallObjectPipeline<NoBudget>");

        obj.SetAllocator(new SystemAllocator()); // no live blocks: a replacement
        Changed("SystemPipeline<NoBudget>");

        runtime.Dispose();
        Assert.Equal("ClosedPipeline", Shape(obj));
    }

    [Fact]
    public void A_hook_removed_from_under_another_rebuilds_the_pipeline_of_the_new_shape()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        MemoryDomain obj = runtime.Obj;
        var lower = new ForwardingHook();
        obj.InstallHook(lower);
        runtime.Tracer.Start(); // tracing over the forwarding hook: the contract
        Assert.Equal("ContractPipeline<NoBudget>", Shape(obj));

        Assert.True(obj.RemoveHook(lower)); // the top stays the same; the chain below it changed
        Assert.Equal("TracedSmallObjectPipeline<NoBudget, ExactTrace>", Shape(obj));
        runtime.Tracer.Stop();
    }

    /// <summary>
    /// Four threads allocate, resize and free (checking each block's contents) while the main thread changes the chain
    /// and the budget through every kind of change; at the end the domain's figures equal what the threads counted.
    /// </summary>
    [Fact]
    public void Chain_and_budget_changes_under_traffic_keep_the_accounting_exact()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        MemoryDomain obj = runtime.Obj;
        using var stop = new CancellationTokenSource();
        const int Threads = 4;
        var counts = new (long Allocations, long Frees, long Reallocations, string? Problem)[Threads];
        var shapes = new HashSet<string>();
        var traffic = Enumerable.Range(0, Threads).Select(t => new Thread(() =>
        {
            var rng = new Random(t);
            var held = new List<(nint Block, nuint Size, byte Seed)>();
            long allocations = 0, frees = 0, reallocations = 0;
            string? problem = null;
            while (!stop.IsCancellationRequested || held.Count > 0)
            {
                bool draining = stop.IsCancellationRequested;
                int op = draining ? 0 : rng.Next(10);
                if (op < 4 && held.Count > 0)
                {
                    int i = rng.Next(held.Count);
                    (nint block, nuint size, byte seed) = held[i];
                    if (!Blocks.Holds((void*)block, size, seed))
                    {
                        problem ??= $"block 0x{block:x} of {size} bytes changed";
                    }

                    obj.Free((void*)block);
                    frees++;
                    held[i] = held[^1];
                    held.RemoveAt(held.Count - 1);
                }
                else if (op < 6 && held.Count > 0)
                {
                    int i = rng.Next(held.Count);
                    (nint block, nuint size, byte seed) = held[i];
                    nuint newSize = (nuint)rng.Next(1, 2048);
                    void* moved = obj.Realloc((void*)block, newSize);
                    if (moved != null)
                    {
                        reallocations++;
                        nuint kept = Math.Min(size, newSize);
                        if (!Blocks.Holds(moved, kept, seed))
                        {
                            problem ??= $"realloc lost the contents of a {size}-byte block";
                        }

                        Blocks.Fill(moved, newSize, seed);
                        held[i] = ((nint)moved, newSize, seed);
                    }
                }
                else if (!draining)
                {
                    nuint size = (nuint)rng.Next(1, 1024);
                    void* p = op == 9 ? obj.Calloc(1, size) : obj.Malloc(size);
                    if (p != null)
                    {
                        allocations++;
                        byte seed = (byte)rng.Next(256);
                        Blocks.Fill(p, size, seed);
                        held.Add(((nint)p, size, seed));
                    }
                }
            }

            counts[t] = (allocations, frees, reallocations, problem);
        })).ToArray();
        foreach (Thread thread in traffic)
        {
            thread.Start();
        }

        for (int round = 0; round < 20; round++)
        {
            var hook = new ForwardingHook();
            obj.InstallHook(hook);
            shapes.Add(Shape(obj));
            Thread.Sleep(2);
            obj.RemoveHook(hook);
            shapes.Add(Shape(obj));
            runtime.Tracer.Start(frames: 1, sampleBytes: round % 2 == 0 ? 0 : 4096);
            shapes.Add(Shape(obj));
            Thread.Sleep(2);
            runtime.Tracer.Stop();
            obj.MaxBytes = 1L << 30;
            shapes.Add(Shape(obj));
            Thread.Sleep(2);
            obj.MaxBytes = null;
            MemoryAllocator top = obj.Allocator;
            obj.SetAllocator(new ForwardingHook());
            shapes.Add(Shape(obj));
            Thread.Sleep(2);
            obj.SetAllocator(top);
        }

        stop.Cancel();
        foreach (Thread thread in traffic)
        {
            thread.Join();
        }

        Assert.All(counts, c => Assert.Null(c.Problem));
        DomainStatistics s = obj.GetStatistics();
        Assert.Equal(counts.Sum(c => c.Allocations), s.Allocations);
        Assert.Equal(counts.Sum(c => c.Frees), s.Frees);
        Assert.Equal(counts.Sum(c => c.Reallocations), s.Reallocations);
        Assert.Equal((0L, 0L), (s.LiveBlocks, s.LiveBytes));
        Assert.Equal(0, s.Failures);
        Assert.Equal(
            ["ContractPipeline<NoBudget>", "SmallObjectPipeline<NoBudget>", "SmallObjectPipeline<WithBudget>",
             "TracedSmallObjectPipeline<NoBudget, ExactTrace>", "TracedSmallObjectPipeline<NoBudget, SampledTrace>"],
            shapes.Order(StringComparer.Ordinal));
    }
}
