using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Runtime.Memory.Hosting;

/// <summary>
/// Validates <see cref="RuntimeMemoryOptions"/> and, when they come from configuration, the raw section too, so
/// that each mistake is reported as one message naming the key, the bad value and the allowed values: unknown
/// allocator names, names whose backend is not in this build, keys that do not exist, and values of the wrong
/// shape (an object where a string belongs), values that do not convert (a violation action, a boolean).
/// </summary>
public sealed class RuntimeMemoryOptionsValidator : IValidateOptions<RuntimeMemoryOptions>
{
    private static readonly string[] KnownKeys =
    [
        nameof(RuntimeMemoryOptions.Allocator), nameof(RuntimeMemoryOptions.Debug), nameof(RuntimeMemoryOptions.Tracing),
        nameof(RuntimeMemoryOptions.Limits),
    ];

    private static readonly string[] LimitsKeys =
    [
        nameof(RuntimeMemoryLimitsOptions.Raw), nameof(RuntimeMemoryLimitsOptions.Mem), nameof(RuntimeMemoryLimitsOptions.Obj),
        nameof(RuntimeMemoryLimitsOptions.Tags),
    ];

    private static readonly string[] BudgetKeys = [nameof(RuntimeMemoryBudgetOptions.MaxBytes)];

    private static readonly string[] TracingKeys =
    [
        nameof(RuntimeMemoryTracingOptions.Enabled), nameof(RuntimeMemoryTracingOptions.Frames),
        nameof(RuntimeMemoryTracingOptions.SampleBytes), nameof(RuntimeMemoryTracingOptions.LeakReportOnDispose),
    ];

    private static readonly string[] DebugKeys = [nameof(RuntimeMemoryDebugOptions.OnViolation), nameof(RuntimeMemoryDebugOptions.GuardPages), nameof(RuntimeMemoryDebugOptions.QuarantineBytes)];

    private readonly IConfigurationSection? _section;
    private readonly string _sectionPath;

    /// <summary>A validator for options set in code; keys are named under <paramref name="sectionPath"/>.</summary>
    public RuntimeMemoryOptionsValidator(string sectionPath = RuntimeMemoryOptions.DefaultSectionName)
    {
        _sectionPath = sectionPath;
    }

    /// <summary>A validator that also checks the raw configuration <paramref name="section"/> the options were bound from.</summary>
    public RuntimeMemoryOptionsValidator(IConfigurationSection section)
    {
        ArgumentNullException.ThrowIfNull(section);
        _section = section;
        _sectionPath = section.Path;
    }

    /// <inheritdoc/>
    public ValidateOptionsResult Validate(string? name, RuntimeMemoryOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var failures = new List<string>();
        if (_section is not null)
        {
            failures.AddRange(CheckSection(_section));
        }

        if (failures.Count == 0)
        {
            string? problem = DescribeAllocatorProblem(options.Allocator);
            if (problem is not null)
            {
                failures.Add($"{Key(nameof(RuntimeMemoryOptions.Allocator))} = '{options.Allocator}': {problem}");
            }

            if (options.Debug is null)
            {
                failures.Add($"{Key(nameof(RuntimeMemoryOptions.Debug))} must not be null.");
            }
            else
            {
                if (!Enum.IsDefined(options.Debug.OnViolation))
                {
                    failures.Add($"{Key("Debug:OnViolation")} = '{options.Debug.OnViolation}': {ViolationActionProblem}");
                }

                if (options.Debug.QuarantineBytes < 0)
                {
                    failures.Add($"{Key("Debug:QuarantineBytes")} = '{options.Debug.QuarantineBytes}': {QuarantineBytesProblem}");
                }
            }

            if (options.Tracing is null)
            {
                failures.Add($"{Key(nameof(RuntimeMemoryOptions.Tracing))} must not be null.");
            }
            else
            {
                if (options.Tracing.Frames is < 1 or > RuntimeMemoryTracingOptions.MaxFrames)
                {
                    failures.Add($"{Key("Tracing:Frames")} = '{options.Tracing.Frames}': {FramesProblem}");
                }

                if (options.Tracing.SampleBytes < 0)
                {
                    failures.Add($"{Key("Tracing:SampleBytes")} = '{options.Tracing.SampleBytes}': {SampleBytesProblem}");
                }
            }

            ValidateLimits(options.Limits, failures);
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    private void ValidateLimits(RuntimeMemoryLimitsOptions? limits, List<string> failures)
    {
        if (limits is null)
        {
            failures.Add($"{Key(nameof(RuntimeMemoryOptions.Limits))} must not be null.");
            return;
        }

        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            string key = $"Limits:{kind}:MaxBytes";
            RuntimeMemoryBudgetOptions? budget = limits[kind];
            if (budget is null)
            {
                failures.Add($"{Key($"Limits:{kind}")} must not be null.");
            }
            else if (budget.MaxBytes is < 1)
            {
                failures.Add($"{Key(key)} = '{budget.MaxBytes}': {MaxBytesProblem}");
            }
        }

        if (limits.Tags is null)
        {
            failures.Add($"{Key("Limits:Tags")} must not be null.");
            return;
        }

        foreach ((string tag, RuntimeMemoryBudgetOptions? budget) in limits.Tags)
        {
            if (!IsTagName(tag))
            {
                failures.Add($"{Key("Limits:Tags")}:{tag}: {TagProblem}");
            }
            else if (budget is null)
            {
                failures.Add($"{Key($"Limits:Tags:{tag}")} must not be null.");
            }
            else if (budget.MaxBytes is < 1)
            {
                failures.Add($"{Key($"Limits:Tags:{tag}:MaxBytes")} = '{budget.MaxBytes}': {MaxBytesProblem}");
            }
        }
    }

    private static string MaxBytesProblem =>
        $"not a budget. Allowed values: a whole number of bytes from 1 to {long.MaxValue} (leave the key out, or empty, for no budget).";

    private static string TagProblem =>
        "not a library tag. Allowed values: a tag of letters, digits, '-', '_' and '.', starting with a letter or digit (the built-in routes' tags are zlib, sqlite, openssl and lua).";

    /// <summary>A library tag as configuration may name it: letters, digits, <c>-</c>, <c>_</c>, <c>.</c>; a letter or digit first.</summary>
    private static bool IsTagName(string tag) =>
        tag.Length > 0 && char.IsAsciiLetterOrDigit(tag[0]) && tag.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');

    private static string FramesProblem => $"not a frame count. Allowed values: an integer from 1 to {RuntimeMemoryTracingOptions.MaxFrames}.";

    private static string QuarantineBytesProblem =>
        "not a quarantine size. Allowed values: 0 (no quarantine) or a positive number of bytes per domain.";

    private static string SampleBytesProblem => "not a sampling interval. Allowed values: 0 (trace every block) or a positive number of bytes.";

    private static string ViolationActionProblem =>
        $"not a violation action. Allowed values: {string.Join(", ", Enum.GetNames<ViolationAction>())}.";

    /// <summary>
    /// Why <paramref name="allocator"/> cannot be used, with the allowed values; <see langword="null"/> when it can.
    /// </summary>
    public static string? DescribeAllocatorProblem(string? allocator)
    {
        string available = string.Join(", ", AllocatorNames.Available);
        if (!AllocatorNames.IsAvailable(allocator))
        {
            return $"not an allocator name. Allowed values: {available}.";
        }

        if (AllocatorNames.NeedsMimalloc(allocator) && MimallocAllocator.LoadProblem is { } missing)
        {
            string without = string.Join(", ", AllocatorNames.All.Where(n => !AllocatorNames.NeedsMimalloc(n)));
            return $"{missing} Allowed values without it: {without}.";
        }

        return null;
    }

    /// <summary>
    /// The problems of a raw configuration section before it is bound: values where sections belong and the reverse,
    /// unknown keys, and values that cannot be converted (which the binder would report without the allowed values).
    /// </summary>
    public static IReadOnlyList<string> CheckSection(IConfigurationSection section)
    {
        ArgumentNullException.ThrowIfNull(section);
        var failures = new List<string>();
        CheckKeys(section, KnownKeys, failures);

        IConfigurationSection allocator = section.GetSection(nameof(RuntimeMemoryOptions.Allocator));
        if (allocator.Value is null && allocator.GetChildren().Any())
        {
            failures.Add(
                $"{allocator.Path} must be a string, not an object. Allowed values: {string.Join(", ", AllocatorNames.Available)}.");
        }
        else if (allocator.Value is { } name && DescribeAllocatorProblem(name) is { } problem)
        {
            // Here as well as on the bound options, so a wrong name is reported with every other wrong key at once
            // (a section with a wrong key is not bound, and Validate then only sees the default name).
            failures.Add($"{allocator.Path} = '{name}': {problem}");
        }

        IConfigurationSection debug = section.GetSection(nameof(RuntimeMemoryOptions.Debug));
        CheckKeys(debug, DebugKeys, failures);

        IConfigurationSection onViolation = debug.GetSection(nameof(RuntimeMemoryDebugOptions.OnViolation));
        if (onViolation.Value is null ? onViolation.GetChildren().Any() : !IsViolationAction(onViolation.Value))
        {
            failures.Add($"{onViolation.Path} = '{onViolation.Value ?? "(an object)"}': {ViolationActionProblem}");
        }

        CheckBoolean(debug.GetSection(nameof(RuntimeMemoryDebugOptions.GuardPages)), failures);
        IConfigurationSection quarantine = debug.GetSection(nameof(RuntimeMemoryDebugOptions.QuarantineBytes));
        if (quarantine.Value is null
                ? quarantine.GetChildren().Any()
                : !long.TryParse(quarantine.Value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long held)
                  || held < 0)
        {
            failures.Add($"{quarantine.Path} = '{quarantine.Value ?? "(an object)"}': {QuarantineBytesProblem}");
        }

        IConfigurationSection tracing = section.GetSection(nameof(RuntimeMemoryOptions.Tracing));
        CheckKeys(tracing, TracingKeys, failures);
        CheckBoolean(tracing.GetSection(nameof(RuntimeMemoryTracingOptions.Enabled)), failures);
        CheckBoolean(tracing.GetSection(nameof(RuntimeMemoryTracingOptions.LeakReportOnDispose)), failures);
        IConfigurationSection frames = tracing.GetSection(nameof(RuntimeMemoryTracingOptions.Frames));
        if (frames.Value is null ? frames.GetChildren().Any() : !int.TryParse(frames.Value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out int n) || n < 1 || n > RuntimeMemoryTracingOptions.MaxFrames)
        {
            failures.Add($"{frames.Path} = '{frames.Value ?? "(an object)"}': {FramesProblem}");
        }

        IConfigurationSection sampleBytes = tracing.GetSection(nameof(RuntimeMemoryTracingOptions.SampleBytes));
        if (sampleBytes.Value is null ? sampleBytes.GetChildren().Any() : !long.TryParse(sampleBytes.Value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long interval) || interval < 0)
        {
            failures.Add($"{sampleBytes.Path} = '{sampleBytes.Value ?? "(an object)"}': {SampleBytesProblem}");
        }

        CheckLimitsSection(section.GetSection(nameof(RuntimeMemoryOptions.Limits)), failures);
        return failures;
    }

    private static void CheckLimitsSection(IConfigurationSection limits, List<string> failures)
    {
        CheckKeys(limits, LimitsKeys, failures);
        foreach (MemoryDomainKind kind in MemoryDomainKindExtensions.All)
        {
            IConfigurationSection budget = limits.GetSection(kind.ToString());
            CheckKeys(budget, BudgetKeys, failures);
            CheckMaxBytes(budget.GetSection(nameof(RuntimeMemoryBudgetOptions.MaxBytes)), failures);
        }

        IConfigurationSection tags = limits.GetSection(nameof(RuntimeMemoryLimitsOptions.Tags));
        if (!string.IsNullOrEmpty(tags.Value))
        {
            failures.Add($"{tags.Path} = '{tags.Value}': {tags.Path} must be a section of tags, each with MaxBytes, not a value.");
        }

        foreach (IConfigurationSection tag in tags.GetChildren())
        {
            if (!IsTagName(tag.Key))
            {
                failures.Add($"{tag.Path}: {TagProblem}");
                continue;
            }

            CheckKeys(tag, BudgetKeys, failures);
            CheckMaxBytes(tag.GetSection(nameof(RuntimeMemoryBudgetOptions.MaxBytes)), failures);
        }
    }

    /// <summary>A budget: a whole number from 1 to <see cref="long.MaxValue"/>, or absent or empty (no budget).</summary>
    private static void CheckMaxBytes(IConfigurationSection key, List<string> failures)
    {
        bool ok = key.Value is null
            ? !key.GetChildren().Any()
            : key.Value.Length == 0 || (long.TryParse(key.Value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out long n) && n >= 1);
        if (!ok)
        {
            failures.Add($"{key.Path} = '{key.Value ?? "(an object)"}': {MaxBytesProblem}");
        }
    }

    private static void CheckBoolean(IConfigurationSection key, List<string> failures)
    {
        if (key.Value is null ? key.GetChildren().Any() : !bool.TryParse(key.Value, out _))
        {
            failures.Add($"{key.Path} = '{key.Value ?? "(an object)"}': not a boolean. Allowed values: true, false.");
        }
    }

    /// <summary>A name of <see cref="ViolationAction"/>, any case; numbers are not accepted, although the binder would take them.</summary>
    private static bool IsViolationAction(string value) =>
        Enum.GetNames<ViolationAction>().Contains(value.Trim(), StringComparer.OrdinalIgnoreCase);

    /// <summary>A section must be a section (not a value) and hold only <paramref name="known"/> keys.</summary>
    private static void CheckKeys(IConfigurationSection section, string[] known, List<string> failures)
    {
        if (!string.IsNullOrEmpty(section.Value))
        {
            failures.Add(
                $"{section.Path} = '{section.Value}': {section.Path} must be a section with keys, not a value. Allowed keys: {string.Join(", ", known)}.");
        }

        foreach (IConfigurationSection child in section.GetChildren())
        {
            if (!known.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                failures.Add($"{child.Path} is not a setting of {section.Path}. Allowed keys: {string.Join(", ", known)}.");
            }
        }
    }

    private string Key(string key) => _sectionPath.Length == 0 ? key : $"{_sectionPath}:{key}";
}
