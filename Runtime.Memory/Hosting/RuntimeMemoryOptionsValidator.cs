using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Options;

namespace Runtime.Memory.Hosting;

/// <summary>
/// Validates <see cref="RuntimeMemoryOptions"/> and, when they come from configuration, the raw section too, so
/// that each mistake is reported as one message naming the key, the bad value and the allowed values: unknown
/// allocator names, names whose backend is not in this build, keys that do not exist, and values of the wrong
/// shape (an object where a string belongs).
/// </summary>
public sealed class RuntimeMemoryOptionsValidator : IValidateOptions<RuntimeMemoryOptions>
{
    private static readonly string[] KnownKeys = [nameof(RuntimeMemoryOptions.Allocator)];

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
            CheckSection(failures);
        }

        if (failures.Count == 0)
        {
            string? problem = DescribeAllocatorProblem(options.Allocator);
            if (problem is not null)
            {
                failures.Add($"{Key(nameof(RuntimeMemoryOptions.Allocator))} = '{options.Allocator}': {problem}");
            }
        }

        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>
    /// Why <paramref name="allocator"/> cannot be used, with the allowed values; <see langword="null"/> when it can.
    /// </summary>
    public static string? DescribeAllocatorProblem(string? allocator)
    {
        if (AllocatorNames.IsAvailable(allocator))
        {
            return null;
        }

        string available = string.Join(", ", AllocatorNames.Available);
        string? missing = AllocatorNames.MissingBackend(allocator);
        if (missing is not null)
        {
            return $"this build does not have that allocator yet (it arrives with {missing}). Allowed values now: {available}.";
        }

        string later = string.Join(", ", AllocatorNames.All.Except(AllocatorNames.Available));
        return $"not an allocator name. Allowed values: {available} (recognised but not in this build yet: {later}).";
    }

    private void CheckSection(List<string> failures)
    {
        if (!string.IsNullOrEmpty(_section!.Value))
        {
            failures.Add(
                $"{_sectionPath} = '{_section.Value}': {_sectionPath} must be a section with keys, not a value. Allowed keys: {string.Join(", ", KnownKeys)}.");
        }

        foreach (IConfigurationSection child in _section.GetChildren())
        {
            if (!KnownKeys.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                failures.Add($"{child.Path} is not a setting of {_sectionPath}. Allowed keys: {string.Join(", ", KnownKeys)}.");
            }
        }

        IConfigurationSection allocator = _section.GetSection(nameof(RuntimeMemoryOptions.Allocator));
        if (allocator.Value is null && allocator.GetChildren().Any())
        {
            failures.Add(
                $"{allocator.Path} must be a string, not an object. Allowed values: {string.Join(", ", AllocatorNames.Available)}.");
        }
    }

    private string Key(string key) => _sectionPath.Length == 0 ? key : $"{_sectionPath}:{key}";
}
