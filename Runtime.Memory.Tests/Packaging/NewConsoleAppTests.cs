using Runtime.Memory.Tests.Infrastructure;

namespace Runtime.Memory.Tests.Packaging;

/// <summary>
/// A new user's first program, built and run as they would: a console app outside this repository (so none of its
/// build settings apply: no <c>AllowUnsafeBlocks</c>), with only the two Microsoft.Extensions usings, that adds the
/// memory service to the generic host and rents a buffer from the container's pool.
/// </summary>
public sealed class NewConsoleAppTests
{
    private const string Program = """
        using Microsoft.Extensions.DependencyInjection;
        using Microsoft.Extensions.Hosting;

        HostApplicationBuilder builder = Host.CreateApplicationBuilder(args);
        builder.Services.AddRuntimeMemory();
        using IHost host = builder.Build();

        System.Buffers.MemoryPool<byte> pool = host.Services.GetRequiredService<System.Buffers.MemoryPool<byte>>();
        var memory = host.Services.GetRequiredService<Runtime.Memory.IRuntimeMemory>();
        using (System.Buffers.IMemoryOwner<byte> owner = pool.Rent(4096))
        {
            Span<byte> span = owner.Memory.Span;
            span.Fill(42);
            Console.WriteLine($"rented {span.Length} bytes, sum {span.ToArray().Sum(b => b)}; obj live: {memory.Obj.LiveBlocks} blocks, {memory.Obj.LiveBytes} bytes");
        }

        Console.WriteLine($"returned; obj live: {memory.Obj.LiveBlocks} blocks, {memory.Obj.GetStatistics().Allocations} allocations in all");
        """;

    [Fact]
    public void A_console_app_with_only_the_hosting_usings_rents_from_the_pool_without_unsafe()
    {
        string repository = Docs.ReadmeSnippetTests.RepositoryRoot();
        string library = Path.Combine(repository, "Runtime.Memory", "Runtime.Memory.csproj");
        string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Debug{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Debug" : "Release";
        string app = Directory.CreateTempSubdirectory("rtmem-first-app-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(app, "FirstApp.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Microsoft.Extensions.Hosting" Version="11.0.0" />
                    <ProjectReference Include="{library}" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), Program);

            // The library is already built with the tests: build the app alone against it.
            (int built, string buildOutput) = Dotnet(app, "build", "-c", configuration, "-p:BuildProjectReferences=false", "-nologo");
            Assert.True(built == 0, $"the app did not build:\n{buildOutput}");
            (int ran, string output) = Dotnet(app, "run", "--no-build", "-c", configuration);
            Assert.True(ran == 0, $"the app failed:\n{output}");

            Assert.Contains("rented 4096 bytes, sum 172032; obj live: 1 blocks, 4096 bytes", output);
            Assert.Contains("returned; obj live: 0 blocks, 1 allocations in all", output);
        }
        finally
        {
            Directory.Delete(app, recursive: true);
        }
    }

    private static (int ExitCode, string Output) Dotnet(string directory, params string[] args)
    {
        ChildProcess.Result result = ChildProcess.Dotnet(directory, QuietSdk, TimeSpan.FromMinutes(4), args);
        return (result.ExitCode, result.Stdout + result.Stderr);
    }

    private static readonly Dictionary<string, string> QuietSdk = new()
    {
        ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1",
        ["DOTNET_NOLOGO"] = "1",
    };
}
