// SqliteRouting: the system's SQLite with every allocation routed into the runtime's raw domain (SQLITE_CONFIG_MALLOC)
// and accounted under the tag "sqlite": a table of 10,000 rows, a query over it, the per-library accounting on the way.
//
//   dotnet run --project samples/SqliteRouting

using System.Runtime.InteropServices;
using Runtime.Memory;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Extensions;
using Runtime.Memory.Extensions.Sqlite;

using RuntimeMemory runtime = RuntimeMemory.Create();
long sum = 0;
using (var route = SqliteRouting.Install(runtime)) // before SQLite allocates anything; refused while it holds memory
{
    Console.WriteLine($"SQLite routed into the {route.Domain.Name} domain under the tag '{route.Account.Tag}'");
    unsafe
    {
        nint db;
        Check(Sqlite.sqlite3_open_v2(":memory:", &db, 0x2 | 0x4, null), "open");
        Check(Sqlite.sqlite3_exec(db, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, value INTEGER); BEGIN;", 0, 0, null), "create");
        nint insert;
        Check(Sqlite.sqlite3_prepare_v2(db, "INSERT INTO t (name, value) VALUES (?1, ?2)", -1, &insert, null), "prepare");
        for (int i = 0; i < 10_000; i++)
        {
            Sqlite.sqlite3_bind_text(insert, 1, $"row number {i}", -1, -1);
            Sqlite.sqlite3_bind_int64(insert, 2, i);
            Sqlite.sqlite3_step(insert);
            Sqlite.sqlite3_reset(insert);
        }

        Sqlite.sqlite3_finalize(insert);
        Check(Sqlite.sqlite3_exec(db, "COMMIT;", 0, 0, null), "commit");
        Console.WriteLine($"10,000 rows inserted:  {route.Account}");

        nint query;
        Check(Sqlite.sqlite3_prepare_v2(db, "SELECT value FROM t ORDER BY name", -1, &query, null), "prepare");
        while (Sqlite.sqlite3_step(query) == 100)
        {
            sum += Sqlite.sqlite3_column_int64(query, 0);
        }

        Sqlite.sqlite3_finalize(query);
        Console.WriteLine($"queried (sum {sum:N0}): {route.Account}; SQLite's own count: {Sqlite.sqlite3_memory_used():N0} bytes");
        Check(Sqlite.sqlite3_close(db), "close");
    }

    Console.WriteLine($"connection closed:     {route.Account}");
}

Console.WriteLine($"route disposed:        {runtime.Tag("sqlite")} (SQLite shut down and its own allocator put back)");
Console.Write(StatisticsReport.Format(runtime.GetStatistics()));
return sum == 10_000L * 9_999 / 2 && runtime.Tag("sqlite").LiveBlocks == 0 && runtime.GetStatistics().LiveBlocks == 0 ? 0 : 1;

static void Check(int rc, string what)
{
    if (rc != 0)
    {
        throw new InvalidOperationException($"sqlite {what} returned {rc}");
    }
}

internal static unsafe partial class Sqlite
{
    [LibraryImport("libsqlite3.so.0", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int sqlite3_open_v2(string filename, nint* db, int flags, byte* vfs);

    [LibraryImport("libsqlite3.so.0")]
    public static partial int sqlite3_close(nint db);

    [LibraryImport("libsqlite3.so.0", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int sqlite3_exec(nint db, string sql, nint callback, nint arg, byte** error);

    [LibraryImport("libsqlite3.so.0", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int sqlite3_prepare_v2(nint db, string sql, int length, nint* statement, byte** tail);

    [LibraryImport("libsqlite3.so.0", StringMarshalling = StringMarshalling.Utf8)]
    public static partial int sqlite3_bind_text(nint statement, int index, string text, int length, nint destructor);

    [LibraryImport("libsqlite3.so.0")]
    public static partial int sqlite3_bind_int64(nint statement, int index, long value);

    [LibraryImport("libsqlite3.so.0")]
    public static partial int sqlite3_step(nint statement);

    [LibraryImport("libsqlite3.so.0")]
    public static partial int sqlite3_reset(nint statement);

    [LibraryImport("libsqlite3.so.0")]
    public static partial int sqlite3_finalize(nint statement);

    [LibraryImport("libsqlite3.so.0")]
    public static partial long sqlite3_column_int64(nint statement, int column);

    [LibraryImport("libsqlite3.so.0")]
    public static partial long sqlite3_memory_used();
}
