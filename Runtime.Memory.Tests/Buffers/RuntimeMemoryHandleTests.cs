using System.Runtime.InteropServices;
using Runtime.Memory.Buffers;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Buffers;

/// <summary>
/// <see cref="RuntimeMemoryHandle"/>: one block of a domain owned by a SafeHandle, handed to a real P/Invoke (libc's
/// <c>memset</c>), freed once through the domain under SafeHandle's reference counting, never throwing from release.
/// </summary>
public sealed unsafe partial class RuntimeMemoryHandleTests
{
    /// <summary>libc's memset, taking the handle itself: the marshaller holds a reference on it for the call.</summary>
    [LibraryImport("libc.so.6", EntryPoint = "memset")]
    private static partial nint Memset(RuntimeMemoryHandle destination, int value, nuint count);

    [Theory]
    [InlineData(MemoryDomainKind.Raw, 100)]
    [InlineData(MemoryDomainKind.Obj, 48)]
    [InlineData(MemoryDomainKind.Mem, 100_000)]
    public void A_handle_passed_to_a_P_Invoke_is_a_live_block_until_disposed(MemoryDomainKind kind, int size)
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        MemoryDomain domain = runtime[kind];
        RuntimeMemoryHandle handle = domain.AllocateHandle((nuint)size);
        Assert.Equal((nuint)size, handle.Size);
        Assert.Same(domain, handle.Domain);
        Assert.Equal(1, domain.LiveBlocks);
        Assert.InRange(domain.LiveBytes, size, size + 15);

        nint returned = Memset(handle, 0xAB, (nuint)size);
        Assert.Equal(handle.DangerousGetHandle(), returned); // memset returns its destination: the block itself
        Assert.Equal(-1, handle.AsSpan().IndexOfAnyExcept((byte)0xAB));
        Assert.Equal(size, handle.AsSpan().Length);

        handle.Dispose();
        Assert.True(handle.IsClosed);
        Assert.Equal(0, domain.LiveBlocks);
        Assert.Equal(0, domain.LiveBytes);
        Assert.Equal(1, domain.GetStatistics().Frees);
    }

    [Fact]
    public void A_reference_taken_with_DangerousAddRef_keeps_the_block_until_it_is_released()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        RuntimeMemoryHandle handle = RuntimeMemoryHandle.Allocate(runtime.Raw, 64);
        bool added = false;
        handle.DangerousAddRef(ref added);
        Assert.True(added);

        handle.Dispose();                     // closed for new users ...
        Assert.Throws<ObjectDisposedException>(() => handle.AsSpan().Length);
        Assert.Equal(1, runtime.Raw.LiveBlocks); // ... but the block stays for the reference
        ((byte*)handle.DangerousGetHandle())[63] = 1;

        handle.DangerousRelease();
        Assert.Equal(0, runtime.Raw.LiveBlocks);
        handle.Dispose();                     // again: nothing
        Assert.Equal(1, runtime.Raw.GetStatistics().Frees);
    }

    [Fact]
    public void AsSpan_after_dispose_throws_and_a_closed_handle_cannot_go_to_a_P_Invoke()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        RuntimeMemoryHandle handle = runtime.Obj.AllocateHandle(32);
        handle.Dispose();

        var ex = Assert.Throws<ObjectDisposedException>(() => handle.AsSpan().Length);
        Assert.Contains("obj domain", ex.Message);
        Assert.Throws<ObjectDisposedException>(() => Memset(handle, 0, 32)); // the marshaller's AddRef refuses it
        Assert.Equal(0, runtime.Obj.LiveBlocks);
    }

    [Fact]
    public void Release_never_throws_a_debug_violation_even_under_Throw()
    {
        using RuntimeMemory runtime = DebugRuntimes.Create(AllocatorNames.Malloc, ViolationAction.Throw);
        RuntimeMemoryHandle handle = runtime.Raw.AllocateHandle(16);
        ((byte*)handle.DangerousGetHandle())[16] = 0x78; // one byte past the block

        handle.Dispose(); // SafeHandle release may run on the finalizer thread: reported, not thrown
        Assert.True(handle.IsClosed);
        Assert.Equal(1, runtime.Debugger.Violations);
        Assert.Equal(MemoryViolationKind.BadTrailingPad, runtime.Debugger.LastViolation!.Kind);
    }

    [Fact]
    public void A_block_over_the_budget_is_refused_with_an_exception_and_no_handle()
    {
        using RuntimeMemory runtime = RuntimeMemory.Create();
        runtime.Raw.MaxBytes = 1000;
        var ex = Assert.Throws<InsufficientMemoryException>(() => runtime.Raw.AllocateHandle(2000));
        Assert.Contains("raw domain's budget refused a handle's block of 2,000 bytes", ex.Message);
        Assert.Equal(0, runtime.Raw.LiveBlocks);

        runtime.Dispose();
        Assert.Throws<ObjectDisposedException>(() => runtime.Raw.AllocateHandle(10));
    }
}
