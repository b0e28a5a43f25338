using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using Runtime.Memory.Extensions;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// <c>sqlite</c>: an in-memory database on the system's SQLite (<c>libsqlite3.so.0</c>, temporary storage in memory
/// too): 300,000 rows inserted into a table with an index on one column, then a GROUP BY over an unindexed column, an
/// ORDER BY of every row by a text column, a self-join of every row through the index, and the connection closed. One
/// operation is that whole run. The rows: SQLite's own allocator (no route: the baseline, the library's own
/// allocator), and SQLite routed (<see cref="SqliteRouting"/>) into the <c>raw</c>, <c>mem</c> and <c>obj</c> domains
/// of a runtime on the <c>default</c> allocators (raw on malloc, mem and obj on the small-object allocator), accounted
/// under the tag <c>sqlite</c>.
/// </summary>
/// <remarks>
/// SQLite has one allocator per process, which it takes only while it is not initialised: each routed row installs
/// its route in a setup of its own (<see cref="SqliteRouting.Install"/> shuts SQLite down first) and BenchmarkDotNet
/// runs every row in a process of its own, so no row runs on another row's allocator. Every operation checks its
/// results (so a route that lost rows would fail, not look fast), and a routed row checks that its route allocated.
/// </remarks>
[MemoryDiagnoser]
[BenchmarkCategory("sqlite")]
public unsafe partial class SqliteBenchmarks
{
    /// <summary>Rows inserted per operation.</summary>
    internal const int Rows = 300_000;

    /// <summary>Distinct values of the grouped column.</summary>
    private const int Groups = 1_000;

    private const int SqliteOk = 0, SqliteRow = 100, SqliteDone = 101;

    /// <summary>
    /// The table, its index on <c>k</c>, and the rows: <c>k</c> and the number in <c>name</c> are permutations of
    /// 0..Rows − 1 (multiplied by primes that share no factor with Rows), so every index insert lands at a scattered
    /// place and the ORDER BY has real sorting to do.
    /// </summary>
    private static readonly string Fill = $"""
        PRAGMA temp_store = MEMORY;
        CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, grp INTEGER NOT NULL, name TEXT NOT NULL);
        CREATE INDEX t_k ON t (k);
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {Rows - 1})
        INSERT INTO t (id, k, grp, name)
          SELECT i, (i * 7919) % {Rows}, i % {Groups}, printf('row %06d', (i * 104729) % {Rows}) FROM n;
        """;

    /// <summary>One row per group (sorting every row by <c>grp</c>, which has no index).</summary>
    private const string GroupBy = "SELECT grp, count(*), sum(k), min(name) FROM t GROUP BY grp";

    /// <summary>Every row, whole, sorted by <c>name</c> (no index); the first column is the number in the name.</summary>
    private const string OrderBy = "SELECT substr(name, 5) + 0, id, k, grp FROM t ORDER BY name";

    /// <summary>Every row joined with the row whose <c>k</c> is the next one (found through the index on <c>k</c>).</summary>
    private static readonly string SelfJoin = $"SELECT count(*), sum(b.grp) FROM t AS a JOIN t AS b ON b.k = (a.k + 1) % {Rows}";

    /// <summary>The self-join's <c>sum(b.grp)</c>: every row is some row's next one, once; each group holds Rows ÷ Groups rows.</summary>
    private const long GroupSum = (long)(Rows / Groups) * Groups * (Groups - 1) / 2;

    private RuntimeMemory? _runtime;
    private SqliteRouting? _route;

    [GlobalSetup(Target = nameof(RoutedRaw))]
    public void SetupRaw() => Install(MemoryDomainKind.Raw);

    [GlobalSetup(Target = nameof(RoutedMem))]
    public void SetupMem() => Install(MemoryDomainKind.Mem);

    [GlobalSetup(Target = nameof(RoutedObj))]
    public void SetupObj() => Install(MemoryDomainKind.Obj);

    [GlobalCleanup]
    public void Cleanup()
    {
        _route?.Dispose(); // puts SQLite's own allocator back
        _runtime?.Dispose();
    }

    /// <summary>SQLite's own allocator (glibc's malloc behind SQLite's <c>sqlite3Malloc</c>): the baseline.</summary>
    [Benchmark(Baseline = true, Description = "SQLite's own allocator")]
    public long Own() => Run();

    /// <summary>SQLite routed into the raw domain (malloc behind the domain and the route's size prefix).</summary>
    [Benchmark(Description = "routed into raw")]
    public long RoutedRaw() => RunRouted();

    /// <summary>SQLite routed into the mem domain (the small-object allocator for blocks up to its limit).</summary>
    [Benchmark(Description = "routed into mem")]
    public long RoutedMem() => RunRouted();

    /// <summary>SQLite routed into the obj domain (the small-object allocator, as mem, in its own domain).</summary>
    [Benchmark(Description = "routed into obj")]
    public long RoutedObj() => RunRouted();

    private void Install(MemoryDomainKind domain)
    {
        _runtime = RuntimeMemory.Create();
        _route = SqliteRouting.Install(_runtime, domain);
    }

    private long RunRouted()
    {
        long before = _route!.Account.Allocations;
        long result = Run();
        return _route.Account.Allocations > before ? result : throw new InvalidOperationException("SQLite allocated nothing through its route");
    }

    /// <summary>The whole run on a new in-memory database; a checksum of what the queries returned.</summary>
    internal static long Run()
    {
        nint db;
        Check(sqlite3_open_v2(":memory:", &db, 0x2 | 0x4, null), 0, "sqlite3_open_v2"); // READWRITE | CREATE
        try
        {
            Check(sqlite3_exec(db, Fill, 0, 0, null), db, "the fill");

            long groups = 0, grouped = 0;
            Query(db, GroupBy, statement =>
            {
                groups++;
                grouped += sqlite3_column_int64(statement, 1);
            });
            Expect(groups == Groups && grouped == Rows, $"GROUP BY gave {groups} groups of {grouped} rows");

            long sorted = 0;
            Query(db, OrderBy, statement =>
            {
                long number = sqlite3_column_int64(statement, 0);
                if (number != sorted)
                {
                    throw new InvalidOperationException($"ORDER BY gave row number {number} at position {sorted}");
                }

                sorted++;
            });
            Expect(sorted == Rows, $"ORDER BY gave {sorted} rows");

            long pairs = 0, sum = 0;
            Query(db, SelfJoin, statement =>
            {
                pairs = sqlite3_column_int64(statement, 0);
                sum = sqlite3_column_int64(statement, 1);
            });
            Expect(pairs == Rows && sum == GroupSum, $"the self-join gave {pairs} pairs summing to {sum}");

            return groups + sorted + pairs + sum;
        }
        finally
        {
            Check(sqlite3_close(db), db, "sqlite3_close");
        }
    }

    /// <summary>Prepares <paramref name="sql"/> and calls <paramref name="row"/> on each row it returns.</summary>
    private static void Query(nint db, string sql, Action<nint> row)
    {
        nint statement;
        Check(sqlite3_prepare_v2(db, sql, -1, &statement, null), db, sql);
        try
        {
            int rc;
            while ((rc = sqlite3_step(statement)) == SqliteRow)
            {
                row(statement);
            }

            Check(rc == SqliteDone ? SqliteOk : rc, db, sql);
        }
        finally
        {
            sqlite3_finalize(statement);
        }
    }

    private static void Check(int rc, nint db, string what)
    {
        if (rc != SqliteOk)
        {
            string message = db != 0 ? Marshal.PtrToStringUTF8(sqlite3_errmsg(db)) ?? "" : "";
            throw new InvalidOperationException($"SQLite returned {rc} for {what}: {message}");
        }
    }

    private static void Expect(bool condition, string otherwise)
    {
        if (!condition)
        {
            throw new InvalidOperationException(otherwise);
        }
    }

    private const string Library = "libsqlite3.so.0";

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int sqlite3_open_v2(string filename, nint* db, int flags, byte* vfs);

    [LibraryImport(Library)]
    private static partial int sqlite3_close(nint db);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int sqlite3_exec(nint db, string sql, nint callback, nint arg, byte** error);

    [LibraryImport(Library, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int sqlite3_prepare_v2(nint db, string sql, int length, nint* statement, byte** tail);

    [LibraryImport(Library)]
    private static partial int sqlite3_step(nint statement);

    [LibraryImport(Library)]
    private static partial int sqlite3_finalize(nint statement);

    [LibraryImport(Library)]
    private static partial long sqlite3_column_int64(nint statement, int column);

    [LibraryImport(Library)]
    private static partial nint sqlite3_errmsg(nint db);
}
