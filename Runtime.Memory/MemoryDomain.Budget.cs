using Microsoft.Extensions.Logging;
using Runtime.Memory.Diagnostics;

namespace Runtime.Memory;

// A domain's budget: the most live bytes it may hold. The check rides on the accounting (MemoryAccounting's gate), so
// a domain with a budget allocates as fast as one without; see MemoryAccounting's remarks for exactness under threads.
//
//   malloc / calloc   allocate, then account: over the budget, the block is freed again and null returned
//   realloc           its growth reserved before resizing (a refused realloc leaves the block as it was), given back
//                     if the resize fails; a shrink always passes
//   free              never refused
//
// A refusal counts as a failure (DomainStatistics.Failures) of reason limit (DomainStatistics.LimitRefusals), and
// opens an episode that the log reports once (event 4301, at most once per second).
public sealed partial class MemoryDomain
{
    private ILogger? _logger;

    /// <summary>
    /// The budget of this domain: the most live bytes (as <see cref="DomainStatistics.LiveBytes"/> counts them) it may
    /// hold, or <see langword="null"/> for none (the default). An allocation or a resize that would pass it returns
    /// <see langword="null"/>, as out of memory does. Can be changed at any time, from any thread; a budget set below
    /// the live size refuses every growth until enough is freed, and frees blocks of nobody.
    /// </summary>
    /// <remarks>
    /// <para>Exact while one thread uses the domain. With T threads using it, the live bytes can pass the budget by
    /// less than (T − 1) × 64 KiB whatever the block sizes (the growth other threads have not published yet); a block
    /// of 64 KiB or more, or a resize growing by that much, is checked and published in one atomic step, and does not
    /// count other threads' unpublished frees, so it can be refused up to that much below the budget.</para>
    /// <para>Hosts set it from <c>RuntimeMemory:Limits:{Raw|Mem|Obj}:MaxBytes</c>, and again whenever the
    /// configuration changes (<see cref="Hosting.RuntimeMemoryLimitsOptions"/>).</para>
    /// </remarks>
    /// <exception cref="ArgumentOutOfRangeException">A negative value.</exception>
    public long? MaxBytes
    {
        get => Budget.ToMaxBytes(_accounting.LimitOf(_index));
        set
        {
            long limit = Budget.FromMaxBytes(value);
            long previous;
            lock (_chainLock)
            {
                previous = _accounting.LimitOf(_index);
                _accounting.SetLimit(_index, limit);
                if ((previous == Budget.None) != (limit == Budget.None))
                {
                    RebuildPipelineUnsynchronized(); // the realloc path reserves only under a budget
                }
            }

            RuntimeMemoryLog.LimitChangedIf(_logger, $"{Name} domain", previous, limit);
        }
    }

    /// <summary>Attaches the runtime's log: chain changes, budget changes and refusal episodes are reported there.</summary>
    internal void AttachLog(ILogger logger, TimeProvider time)
    {
        _logger = logger;
        _accounting.SetBudgetLog(_index, new BudgetLog(logger, time, $"{Name} domain"));
    }
}
