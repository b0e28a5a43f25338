using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Testing;

/// <summary>
/// The helper that skips tests whose optional native library is missing (<see cref="OptionalLibraries"/>): only the
/// rows that need the library may skip, so every other allocator name must run whatever the machine has.
/// </summary>
public sealed class OptionalLibrariesTests
{
    [Fact]
    public void Only_the_mimalloc_names_need_an_optional_library_and_every_other_name_always_runs()
    {
        Assert.Equal(
            [AllocatorNames.Mimalloc, AllocatorNames.MimallocDebug],
            AllocatorNames.All.Where(n => OptionalLibraries.NeededBy(n) is not null));
        Assert.Equal(OptionalLibrary.Mimalloc, OptionalLibraries.NeededBy("MiMalloc_Debug"));

        foreach (string name in AllocatorNames.All.Where(n => !AllocatorNames.NeedsMimalloc(n)))
        {
            Assert.Null(OptionalLibraries.NeededBy(name));
            Assert.True(OptionalLibraries.IsAvailable(name), name);
            OptionalLibraries.SkipUnlessAvailable(name); // a [Fact]: a skip here would fail the test
        }
    }

    [Fact]
    public void The_mimalloc_names_are_available_exactly_when_the_library_says_mimalloc_loads()
    {
        Assert.Equal(MimallocAllocator.LoadProblem is null, OptionalLibraries.IsAvailable(AllocatorNames.Mimalloc));
        Assert.Equal(MimallocAllocator.LoadProblem, OptionalLibraries.Problem(OptionalLibrary.Mimalloc));
    }
}
