using System.Diagnostics.Metrics;
using Runtime.Memory.Diagnostics;

namespace Runtime.Memory.Benchmarks;

/// <summary>
/// The observability rows' runtimes: metrics listened to, a budget set, or both. Issue 7's target: each at most
/// 1.05× the plain domain.
/// </summary>
internal static class ObservabilitySetup
{
    /// <summary>A budget the workloads never reach (they hold a few MiB): the cost of having one, not of refusals.</summary>
    public const long Budget = 1L << 30;

    /// <summary>How often the listener collects: ten times as often as <c>dotnet-counters</c>' default of one second.</summary>
    public static readonly TimeSpan CollectEvery = TimeSpan.FromMilliseconds(100);

    /// <summary>A runtime with the <c>Runtime.Memory</c> meter listened to: every instrument enabled, and collected on a
    /// background thread every <see cref="CollectEvery"/> as long as the returned handle lives.</summary>
    public static (RuntimeMemory Runtime, IDisposable Listening) Listened(bool budget = false)
    {
        RuntimeMemory runtime = RuntimeMemory.Create();
        if (budget)
        {
            runtime.Obj.MaxBytes = Budget;
        }

        runtime.EnableMetrics(new PlainMeterFactory());
        return (runtime, new Listener(runtime.Metrics!.Meter));
    }

    /// <summary>A runtime whose obj domain has a budget it never reaches.</summary>
    public static RuntimeMemory Budgeted()
    {
        RuntimeMemory runtime = RuntimeMemory.Create();
        runtime.Obj.MaxBytes = Budget;
        return runtime;
    }

    private sealed class PlainMeterFactory : IMeterFactory
    {
        public Meter Create(MeterOptions options) => new(options);

        public void Dispose()
        {
        }
    }

    /// <summary>Listens to every instrument of one meter and collects the observable ones periodically.</summary>
    private sealed class Listener : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly Timer _timer;
        private long _sum; // what the collections read, summed: a callback with an effect, as an exporter's

        public Listener(Meter meter)
        {
            _listener.InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter, meter))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            };
            _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _sum, value));
            _listener.Start();
            _timer = new Timer(_ => _listener.RecordObservableInstruments(), null, CollectEvery, CollectEvery);
        }

        public void Dispose()
        {
            _timer.Dispose();
            _listener.Dispose();
        }
    }
}
