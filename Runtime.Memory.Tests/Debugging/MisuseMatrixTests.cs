using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging.Abstractions;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Debugging;

/// <summary>
/// Issue 29's detection matrix in one place: every kind of misuse the debug hooks know (overruns, underruns, a damaged
/// size field, double frees, wrong domains, interior and foreign pointers, writes after free at the first, a middle
/// and the last byte, and after a later allocation of the same size), on every <c>*_debug</c> allocator name, on every
/// domain, under <see cref="ViolationAction.Throw"/> and <see cref="ViolationAction.Log"/>, gives exactly one report of
/// the expected kind. (<see cref="ViolationAction.FailFast"/> stops the process: the DebugHooks sample's child-process
/// tests cover it, for an overrun and for a write after free.) The report texts are snapshotted by
/// <see cref="DetectionMatrixTests"/> and <see cref="QuarantineTests"/>.
/// </summary>
public sealed unsafe class MisuseMatrixTests
{
    private delegate void Misuse(RuntimeMemory runtime, MemoryDomain domain);

    private static readonly Dictionary<string, (MemoryViolationKind Kind, Misuse Provoke)> Misuses = new()
    {
        ["overrun"] = (MemoryViolationKind.BadTrailingPad, (_, d) => { byte* p = (byte*)d.Malloc(16); p[16] = (byte)'x'; d.Free(p); }),
        ["underrun"] = (MemoryViolationKind.BadLeadingPad, (_, d) => { byte* p = (byte*)d.Malloc(40); p[-1] = 0; d.Free(p); }),
        ["size field"] = (MemoryViolationKind.BadSizeField, (_, d) => { byte* p = (byte*)d.Malloc(16); p[-12] = 0x41; d.Free(p); }),
        ["double free"] = (MemoryViolationKind.AlreadyFreed, (_, d) => { void* p = d.Malloc(32); d.Free(p); d.Free(p); }),
        ["realloc of a freed block"] = (MemoryViolationKind.AlreadyFreed, (_, d) => { void* p = d.Malloc(48); d.Free(p); d.Realloc(p, 96); }),
        ["wrong domain"] = (MemoryViolationKind.WrongDomain, (r, d) => { void* p = d.Malloc(16); r[(MemoryDomainKind)(((int)d.Kind + 1) % 3)].Free(p); }),
        ["interior pointer"] = (MemoryViolationKind.InteriorPointer, (_, d) => { byte* p = (byte*)d.Malloc(64); d.Free(p + 8); }),
        ["foreign pointer"] = (MemoryViolationKind.UnknownPointer, (_, d) =>
        {
            void* foreign = NativeMemory.AlignedAlloc(64, 16);
            try
            {
                d.Free(foreign);
            }
            finally
            {
                NativeMemory.AlignedFree(foreign);
            }
        }),
        ["write after free, first byte"] = (MemoryViolationKind.WriteAfterFree, (r, d) => WriteAfterFree(r, d, 0, reuse: false)),
        ["write after free, middle byte"] = (MemoryViolationKind.WriteAfterFree, (r, d) => WriteAfterFree(r, d, 16, reuse: false)),
        ["write after free, last byte"] = (MemoryViolationKind.WriteAfterFree, (r, d) => WriteAfterFree(r, d, 31, reuse: false)),
        ["write after free, then a later allocation"] = (MemoryViolationKind.WriteAfterFree, (r, d) => WriteAfterFree(r, d, 7, reuse: true)),
    };

    private static void WriteAfterFree(RuntimeMemory runtime, MemoryDomain domain, int offset, bool reuse)
    {
        byte* p = (byte*)domain.Malloc(32);
        domain.Free(p);
        p[offset] = 0x01; // the bug: a stale pointer written through
        void* later = reuse ? domain.Malloc(32) : null; // the same size: the block it would reuse is held in the quarantine
        try
        {
            runtime.Debugger.FlushQuarantine(); // what Collect, Dispose and the quarantine's own turnover do
        }
        finally
        {
            domain.Free(later);
        }
    }

    public static TheoryData<string, ViolationAction, string> Cases()
    {
        var data = new TheoryData<string, ViolationAction, string>();
        foreach (string allocator in new[] { AllocatorNames.Debug, AllocatorNames.MallocDebug, AllocatorNames.PymallocDebug, AllocatorNames.MimallocDebug })
        {
            foreach (ViolationAction action in new[] { ViolationAction.Throw, ViolationAction.Log })
            {
                foreach (string misuse in Misuses.Keys)
                {
                    data.Add(allocator, action, misuse);
                }
            }
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Each_misuse_gives_one_report_of_its_kind_on_every_domain(string allocator, ViolationAction action, string misuse)
    {
        OptionalLibraries.SkipUnlessAvailable(allocator);
        (MemoryViolationKind expected, Misuse provoke) = Misuses[misuse];
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            var options = new RuntimeMemoryOptions { Allocator = allocator, Debug = new RuntimeMemoryDebugOptions { OnViolation = action } };
            using var runtime = new RuntimeMemory(new DefaultAllocatorProvider(options), options, NullLoggerFactory.Instance);
            MemoryDomain domain = runtime[kind];
            if (action == ViolationAction.Throw)
            {
                MemoryViolation thrown = DebugRuntimes.Catch(() => provoke(runtime, domain));
                Assert.Same(thrown, runtime.Debugger.LastViolation);
            }
            else
            {
                provoke(runtime, domain); // reported (to the null logger) and the program carries on
            }

            Assert.Equal(1, runtime.Debugger.Violations);
            MemoryViolation violation = runtime.Debugger.LastViolation!;
            Assert.True(expected == violation.Kind, $"{misuse} on {allocator}/{kind.ToName()} under {action}: {violation.Kind}, expected {expected}\n{violation.Report}");
        }
    }
}
