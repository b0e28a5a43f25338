using Runtime.Memory.Extensions;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Budgets;

/// <summary>
/// A library tag's budget (<see cref="LibraryAccount.MaxBytes"/>): the route reserves before it allocates, so the
/// library never holds more than the budget, on any number of threads.
/// </summary>
public sealed unsafe class TagBudgetTests
{
    private sealed class TestRoute(RuntimeMemory runtime, string tag) : LibraryRoute(runtime, MemoryDomainKind.Raw, tag);

    [Fact]
    public void Exceed_free_and_allocate_again()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using var route = new TestRoute(runtime, "budgeted");
        route.Account.MaxBytes = 300;

        void* a = route.Allocate(100);
        void* b = route.Allocate(200, zeroed: true);
        Assert.True(a != null && b != null);
        Assert.True(route.Allocate(1) == null);
        Assert.Equal(300, route.Account.LiveBytes);
        Assert.Equal(1, route.Account.LimitRefusals);
        Assert.Equal(1, route.Account.Failures);
        Assert.Equal(2, route.Account.LiveBlocks);
        Assert.Equal(2, runtime.Raw.LiveBlocks); // the refusal never reached the domain

        route.Release(a);
        void* c = route.Allocate(100);
        Assert.True(c != null);
        route.Release(b);
        route.Release(c);
        Assert.Equal(0, route.Account.LiveBytes);
        Assert.Equal(300, route.Account.PeakBytes);
        Assert.Equal(0, runtime.Raw.LiveBlocks);
    }

    [Fact]
    public void A_refused_reallocation_keeps_the_block_and_a_shrink_always_passes()
    {
        using RuntimeMemory runtime = TestRuntimes.Create();
        using var route = new TestRoute(runtime, "budgeted");
        void* p = route.Allocate(500);
        Blocks.Fill(p, 500, 1);
        route.Account.MaxBytes = 100; // below what the library holds

        Assert.True(route.Reallocate(p, 600) == null);
        Assert.True(Blocks.Holds(p, 500, 1));
        Assert.Equal(500, route.Account.LiveBytes);

        void* shrunk = route.Reallocate(p, 50);
        Assert.True(shrunk != null);
        Assert.True(Blocks.Holds(shrunk, 50, 1));
        Assert.Equal(50, route.Account.LiveBytes);
        void* grown = route.Reallocate(shrunk, 100);
        Assert.True(grown != null);
        route.Release(grown);
        Assert.Equal(0, route.Account.LiveBytes);
    }

    [Fact]
    public void A_domain_failure_gives_the_reservation_back()
    {
        using RuntimeMemory runtime = TestRuntimes.Create();
        using var route = new TestRoute(runtime, "budgeted");
        route.Account.MaxBytes = 1000;
        runtime.Raw.MaxBytes = 100; // the domain refuses first

        Assert.True(route.Allocate(500) == null);
        Assert.Equal(0, route.Account.LiveBytes);
        Assert.Equal(1, route.Account.Failures);
        Assert.Equal(0, route.Account.LimitRefusals); // the tag's budget did not refuse it
        Assert.Equal(1, runtime.Raw.GetStatistics().LimitRefusals);
    }

    [Fact]
    public void Threads_never_pass_a_tag_budget()
    {
        using RuntimeMemory runtime = TestRuntimes.Create(AllocatorNames.Pymalloc);
        using var route = new TestRoute(runtime, "budgeted");
        const long budget = 64 * 1024;
        route.Account.MaxBytes = budget;
        Parallel.For(0, 4, new ParallelOptions { MaxDegreeOfParallelism = 4 }, _ =>
        {
            var held = new Stack<nint>();
            for (int i = 0; i < 50_000; i++)
            {
                void* p = route.Allocate(48);
                if (p == null)
                {
                    if (held.Count > 0)
                    {
                        route.Release((void*)held.Pop());
                    }
                }
                else
                {
                    held.Push((nint)p);
                }
            }

            while (held.Count > 0)
            {
                route.Release((void*)held.Pop());
            }
        });

        Assert.True(route.Account.PeakBytes <= budget, $"peak {route.Account.PeakBytes} passed the budget {budget}");
        Assert.True(route.Account.LimitRefusals > 0);
        Assert.Equal(0, route.Account.LiveBytes);
        Assert.Equal(0, runtime.Raw.LiveBlocks);
    }

    [Fact]
    public void Tags_match_ignoring_case()
    {
        using RuntimeMemory runtime = TestRuntimes.Create();
        runtime.Tag("Lua").MaxBytes = 10;
        Assert.Same(runtime.Tag("Lua"), runtime.Tag("lua"));
        Assert.Equal(10, runtime.Tag("LUA").MaxBytes);
    }
}
