using ApprovalTests;
using ApprovalTests.Namers;
using ApprovalTests.Reporters;
using ApprovalTests.Reporters.TestFrameworks;

[assembly: UseReporter(typeof(XUnit2Reporter))]
[assembly: UseApprovalSubdirectory("Snapshots")]

namespace Runtime.Memory.Tests.Infrastructure;

/// <summary>
/// The one door to snapshot testing of text reports. Snapshots live in <c>Snapshots/&lt;Class&gt;.&lt;Method&gt;.approved.txt</c>
/// next to the test file; a mismatch writes <c>.received.txt</c> beside it and fails with a diff. To accept a change,
/// move the received file over the approved one. Switching to Verify later means renaming <c>.approved.</c> to
/// <c>.verified.</c> and changing this file only.
/// </summary>
internal static class TextSnapshot
{
    /// <summary>Compares <paramref name="text"/> (line endings normalised to LF) with the approved snapshot of the calling test.</summary>
    public static void Verify(string text) => Approvals.Verify(text.ReplaceLineEndings("\n"));
}
