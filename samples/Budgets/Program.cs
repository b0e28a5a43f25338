// Budgets, logs, metrics and the statistics snapshot, end to end, the way a host wires them:
// configuration -> AddRuntimeMemory (limits validated at start, followed at run time), ILogger, IMeterFactory.
//
//   dotnet run --project samples/Budgets
//   dotnet run --project samples/Budgets -- --RuntimeMemory:Limits:Obj:MaxBytes=lots     (stops at start: key, value, allowed values)
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Runtime.Memory;
using Runtime.Memory.Diagnostics;
using Runtime.Memory.Hosting;

IConfigurationRoot configuration = new ConfigurationBuilder()
    .AddInMemoryCollection(new Dictionary<string, string?> { ["RuntimeMemory:Limits:Obj:MaxBytes"] = "1048576" })
    .AddCommandLine(args)
    .Build();

var services = new ServiceCollection();
services.AddSingleton<IConfiguration>(configuration);
services.AddLogging(builder => builder.AddSimpleConsole(o => o.SingleLine = true));
services.AddMetrics();
services.AddRuntimeMemory();
using ServiceProvider provider = services.BuildServiceProvider();

IRuntimeMemory runtime;
try
{
    runtime = provider.ValidateRuntimeMemory();
}
catch (OptionsValidationException ex)
{
    Console.Error.WriteLine($"configuration error: {ex.Message}");
    return 2;
}

// What an exporter sees: the refusals, by reason.
var failures = new Dictionary<string, long>();
using var listener = new MeterListener();
listener.InstrumentPublished = (instrument, l) =>
{
    if (instrument.Meter.Name == RuntimeMemoryMetrics.MeterName && instrument.Name == "runtime.memory.allocation.failures")
    {
        l.EnableMeasurementEvents(instrument);
    }
};
listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
{
    string domain = "", reason = "";
    foreach (KeyValuePair<string, object?> tag in tags)
    {
        if (tag.Key == RuntimeMemoryMetrics.DomainTag) domain = (string)tag.Value!;
        if (tag.Key == RuntimeMemoryMetrics.ErrorTypeTag) reason = (string)tag.Value!;
    }

    failures[$"{domain}/{reason}"] = value;
});
listener.Start();

var blocks = new List<nint>();
int Fill()
{
    int admitted = 0;
    unsafe
    {
        for (void* p = runtime.Obj.Malloc(4096); p != null; p = runtime.Obj.Malloc(4096))
        {
            blocks.Add((nint)p);
            admitted++;
        }
    }

    return admitted;
}

Console.WriteLine($"1. budget {runtime.Obj.MaxBytes:N0} bytes: {Fill()} blocks of 4 KiB admitted, then a refusal (event 4301 above)");
unsafe
{
    for (int i = 0; i < 3; i++)
    {
        _ = runtime.Obj.Malloc(4096); // the same episode: counted, not logged again
    }
}

configuration["RuntimeMemory:Limits:Obj:MaxBytes"] = "2097152";
configuration.Reload(); // as an edit of appsettings.json does on a running host
Console.WriteLine($"2. budget raised at run time to {runtime.Obj.MaxBytes:N0} bytes: {Fill()} more blocks admitted");

configuration["RuntimeMemory:Limits:Obj:MaxBytes"] = "lots";
configuration.Reload(); // a bad edit: logged (event 4303), not applied, the host keeps running
Console.WriteLine($"3. after a bad change the budget is still {runtime.Obj.MaxBytes:N0} bytes");

listener.RecordObservableInstruments();
RuntimeMemoryStatistics statistics = runtime.GetStatistics();
DomainStatistics obj = statistics[MemoryDomainKind.Obj];
Console.WriteLine($"4. the snapshot: {obj.LimitRefusals} refusals of {obj.Failures} failures in obj; the meter: runtime.memory.allocation.failures{{obj, limit}} = {failures.GetValueOrDefault("obj/limit")}");
Console.WriteLine();
Console.Write(StatisticsReport.Format(statistics));

unsafe
{
    blocks.ForEach(p => runtime.Obj.Free((void*)p));
}

bool consistent = obj.LimitRefusals == 5 && failures.GetValueOrDefault("obj/limit") == obj.LimitRefusals && runtime.Obj.MaxBytes == 2097152;
return consistent && runtime.GetStatistics().LiveBlocks == 0 ? 0 : 1;
