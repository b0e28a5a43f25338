using System.Runtime.InteropServices;
using Runtime.Memory.Extensions;
using Runtime.Memory.Testing;
using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Extensions;

/// <summary>
/// SQLite (the system's libsqlite3.so.0) allocating through a runtime. SQLite's allocator is process-wide, so these
/// tests run one at a time (one class) and each puts the previous allocator back.
/// </summary>
public sealed unsafe partial class SqliteRoutingTests
{
    private const int SqliteOk = 0, SqliteNoMem = 7, SqliteRow = 100, SqliteDone = 101;

    /// <summary>Creates a table, inserts <paramref name="rows"/> rows, sums them back, closes. Returns the first non-OK SQLite code, or OK.</summary>
    private static int Workload(int rows, out long sum)
    {
        sum = 0;
        nint db;
        int rc = sqlite3_open_v2(":memory:", &db, 0x2 | 0x4, null); // READWRITE | CREATE
        if (rc != SqliteOk)
        {
            sqlite3_close(db);
            return rc;
        }

        try
        {
            rc = sqlite3_exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, value INTEGER); BEGIN;", 0, 0, null);
            if (rc != SqliteOk)
            {
                return rc;
            }

            nint insert;
            rc = sqlite3_prepare_v2(db, "INSERT INTO t (name, value) VALUES (?1, ?2)", -1, &insert, null);
            if (rc != SqliteOk)
            {
                return rc;
            }

            for (int i = 0; i < rows && rc == SqliteOk; i++)
            {
                sqlite3_bind_text(insert, 1, $"row number {i}", -1, -1); // SQLITE_TRANSIENT: SQLite copies the text
                sqlite3_bind_int64(insert, 2, i);
                rc = sqlite3_step(insert);
                rc = rc == SqliteDone ? SqliteOk : rc;
                sqlite3_reset(insert);
            }

            sqlite3_finalize(insert);
            if (rc != SqliteOk || (rc = sqlite3_exec(db, "COMMIT;", 0, 0, null)) != SqliteOk)
            {
                return rc;
            }

            nint query;
            rc = sqlite3_prepare_v2(db, "SELECT value, length(name) FROM t ORDER BY name", -1, &query, null);
            if (rc != SqliteOk)
            {
                return rc;
            }

            while ((rc = sqlite3_step(query)) == SqliteRow)
            {
                sum += sqlite3_column_int64(query, 0);
            }

            sqlite3_finalize(query);
            return rc == SqliteDone ? SqliteOk : rc;
        }
        finally
        {
            Assert.Equal(SqliteOk, sqlite3_close(db));
        }
    }

    [SkippableTheory]
    [InlineData(AllocatorNames.Pymalloc, MemoryDomainKind.Raw)]
    [InlineData(AllocatorNames.Pymalloc, MemoryDomainKind.Mem)]
    [InlineData(AllocatorNames.MallocDebug, MemoryDomainKind.Raw)]
    public void Ten_thousand_rows_are_inserted_and_read_back_with_every_byte_accounted(string allocator, MemoryDomainKind kind)
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Sqlite);
        using RuntimeMemory runtime = TestRuntimes.Create(allocator);
        runtime.Debugger.OnViolation = ViolationAction.Throw;
        using (var route = SqliteRouting.Install(runtime, kind))
        {
            Assert.Equal(SqliteOk, Workload(10_000, out long sum));
            Assert.Equal(10_000L * 9_999 / 2, sum);
            Assert.True(route.Account.PeakBytes > 500_000, $"peak {route.Account.PeakBytes}"); // the table and its index
            Assert.Equal(route.Account.LiveBytes, sqlite3_memory_used()); // SQLite's own count is the sum of our xSize
            Assert.True(route.Account.Allocations > 10_000);
        }

        // Disposing shut SQLite down (it freed everything) and put its own allocator back.
        Assert.Equal(0, runtime.Tag("sqlite").LiveBlocks);
        Assert.Equal(0, runtime.Tag("sqlite").LiveBytes);
        Assert.Equal(0, runtime[kind].LiveBlocks);
        Assert.Equal(SqliteOk, Workload(10, out _)); // SQLite works on its own allocator again
        Assert.Equal(0, runtime.Tag("sqlite").Allocations - runtime.Tag("sqlite").Frees);
        Assert.Equal(0, runtime.Debugger.Violations);
    }

    [SkippableFact]
    public void A_second_route_is_refused_naming_the_first()
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Sqlite);
        using RuntimeMemory first = TestRuntimes.Create();
        using RuntimeMemory second = TestRuntimes.Create();
        using var route = SqliteRouting.Install(first);
        var error = Assert.Throws<InvalidOperationException>(() => SqliteRouting.Install(second, MemoryDomainKind.Mem));
        Assert.Contains("already routed into the raw domain of another runtime (tag 'sqlite')", error.Message);
    }

    [SkippableFact]
    public void Installing_while_a_connection_is_open_is_reported_not_ignored()
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Sqlite);
        using RuntimeMemory runtime = TestRuntimes.Create();
        nint db;
        Assert.Equal(SqliteOk, sqlite3_open_v2(":memory:", &db, 0x2 | 0x4, null));
        try
        {
            var error = Assert.Throws<InvalidOperationException>(() => SqliteRouting.Install(runtime));
            Assert.Contains("Cannot route SQLite's allocator: SQLite holds", error.Message);
            Assert.Contains("Close every connection first.", error.Message);
        }
        finally
        {
            Assert.Equal(SqliteOk, sqlite3_close(db));
        }

        using var route = SqliteRouting.Install(runtime); // with the connection closed it works
        Assert.Equal(SqliteOk, Workload(5, out _));
    }

    [SkippableFact]
    public void Every_allocation_failing_in_turn_gives_SQLITE_NOMEM_and_leaks_nothing()
    {
        OptionalLibraries.SkipUnlessAvailable(OptionalLibrary.Sqlite);
        int allocations;
        using (RuntimeMemory probe = TestRuntimes.Create())
        using (var route = SqliteRouting.Install(probe))
        {
            long before = route.Account.Allocations;
            Assert.Equal(SqliteOk, Workload(50, out _));
            allocations = (int)(route.Account.Allocations - before);
        }

        Assert.InRange(allocations, 20, 5_000);
        int step = Math.Max(1, allocations / 300);
        int noMemory = 0;
        for (int i = 1; i <= allocations; i += step)
        {
            using RuntimeMemory runtime = TestRuntimes.Create();
            using (var route = SqliteRouting.Install(runtime))
            {
                var failing = new FailingAllocator();
                runtime.Raw.InstallHook(failing);
                failing.FailOnly(i);
                int rc = Workload(50, out _);
                Assert.True(rc is SqliteOk or SqliteNoMem, $"failing allocation {i}: SQLite returned {rc}");
                noMemory += rc == SqliteNoMem ? 1 : 0;
                failing.FailNever();
            }

            Assert.Equal(0, runtime.Tag("sqlite").LiveBlocks);
            Assert.Equal(0, runtime.Raw.LiveBlocks);
        }

        Assert.True(noMemory > 0, "no injected failure reached SQLite as SQLITE_NOMEM");
    }

    [LibraryImport("libsqlite3.so.0", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int sqlite3_open_v2(string filename, nint* db, int flags, byte* vfs);

    [LibraryImport("libsqlite3.so.0")]
    private static partial int sqlite3_close(nint db);

    [LibraryImport("libsqlite3.so.0", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int sqlite3_exec(nint db, string sql, nint callback, nint arg, byte** error);

    [LibraryImport("libsqlite3.so.0", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int sqlite3_prepare_v2(nint db, string sql, int length, nint* statement, byte** tail);

    [LibraryImport("libsqlite3.so.0", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int sqlite3_bind_text(nint statement, int index, string text, int length, nint destructor);

    [LibraryImport("libsqlite3.so.0")]
    private static partial int sqlite3_bind_int64(nint statement, int index, long value);

    [LibraryImport("libsqlite3.so.0")]
    private static partial int sqlite3_step(nint statement);

    [LibraryImport("libsqlite3.so.0")]
    private static partial int sqlite3_reset(nint statement);

    [LibraryImport("libsqlite3.so.0")]
    private static partial int sqlite3_finalize(nint statement);

    [LibraryImport("libsqlite3.so.0")]
    private static partial long sqlite3_column_int64(nint statement, int column);

    [LibraryImport("libsqlite3.so.0")]
    private static partial long sqlite3_memory_used();
}
