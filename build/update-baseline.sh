#!/usr/bin/env bash
# Makes the packages of today's sources the baseline that package validation compares every later pack with: run it
# when a version is released (after build/update-public-api.sh --ship), and after a deliberate break of the whole API
# before the first release (such as a rename of the namespaces).
#
#   build/update-baseline.sh [project.csproj ...]      default: every project of RuntimeMem.sln with IsPackable=true
#
# Each package is packed without the baseline check into build/baseline/<PackageId>.<Version>.nupkg (older baselines
# of that id are removed), and RuntimeMemBaselineVersion in Directory.Build.props becomes <Version>. Commit both.
# (Nothing is on nuget.org yet, so the released packages are kept here; once they are, PackageValidationBaselineVersion
# alone would do, and this folder can go.)
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

projects=("$@")
if [ ${#projects[@]} -eq 0 ]; then
  while IFS= read -r proj; do
    if [ "$(dotnet msbuild "$proj" -getProperty:IsPackable 2>/dev/null)" = "true" ]; then projects+=("$proj"); fi
  done < <(dotnet sln RuntimeMem.sln list | grep -E '\.csproj$' | tr '\\' '/')
fi
[ ${#projects[@]} -gt 0 ] || { echo "no packable project found" >&2; exit 1; }

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p build/baseline
version=
for proj in "${projects[@]}"; do
  id=$(dotnet msbuild "$proj" -getProperty:PackageId)
  version=$(dotnet msbuild "$proj" -getProperty:Version)
  dotnet pack "$proj" -c Release -o "$out" -p:DisablePackageBaselineValidation=true -p:IncludeSymbols=false -nologo -v quiet
  rm -f build/baseline/"$id".[0-9]*.nupkg
  cp "$out/$id.$version.nupkg" build/baseline/
  echo "baseline: build/baseline/$id.$version.nupkg"
done
sed -i "s|<RuntimeMemBaselineVersion>[^<]*</RuntimeMemBaselineVersion>|<RuntimeMemBaselineVersion>$version</RuntimeMemBaselineVersion>|" Directory.Build.props
echo "RuntimeMemBaselineVersion: $version (Directory.Build.props)"
