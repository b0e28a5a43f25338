#!/usr/bin/env bash
# Regenerates the public-API files (PublicAPI.Shipped.txt, PublicAPI.Unshipped.txt) of the packable projects, which
# Microsoft.CodeAnalysis.PublicApiAnalyzers checks at every build (RS0016: a public API missing from them; RS0017: a
# line whose API is gone; both errors).
#
#   build/update-public-api.sh [--ship] [project.csproj ...]
#
# Without projects: every project of RuntimeMem.sln with IsPackable=true.
# Default: Shipped stays as it is; Unshipped becomes what changed since: the new API, and "*REMOVED*" lines for shipped
#          API that is gone (the analyzer's notation). Run it after changing the public API, and review the diff.
# --ship:  all of today's API becomes Shipped and Unshipped is emptied: at a release (then build/update-baseline.sh),
#          or after a rename of everything before the first release.
#
# How: both files are emptied, `dotnet format analyzers --diagnostics RS0016` applies the analyzer's own code fix (which
# writes every public API into PublicAPI.Unshipped.txt), and the result is split against the old Shipped file.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

ship=false
projects=()
for arg in "$@"; do
  case "$arg" in
    --ship) ship=true ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) projects+=("$arg") ;;
  esac
done

if [ ${#projects[@]} -eq 0 ]; then
  while IFS= read -r proj; do
    if [ "$(dotnet msbuild "$proj" -getProperty:IsPackable 2>/dev/null)" = "true" ]; then projects+=("$proj"); fi
  done < <(dotnet sln RuntimeMem.sln list | grep -E '\.csproj$' | tr '\\' '/')
fi
[ ${#projects[@]} -gt 0 ] || { echo "no packable project found" >&2; exit 1; }

header='#nullable enable'
for proj in "${projects[@]}"; do
  dir=$(dirname "$proj")
  shipped="$dir/PublicAPI.Shipped.txt"; unshipped="$dir/PublicAPI.Unshipped.txt"
  echo "== $proj"
  old_shipped=$(mktemp)
  if [ -f "$shipped" ]; then grep -v -e '^#nullable enable$' -e '^$' "$shipped" | LC_ALL=C sort -u > "$old_shipped" || true; fi

  printf '%s\n' "$header" > "$shipped"
  printf '%s\n' "$header" > "$unshipped"
  dotnet restore "$proj" >/dev/null
  dotnet format analyzers "$proj" --diagnostics RS0016 --severity warn --no-restore >/dev/null
  current=$(mktemp)
  grep -v -e '^#nullable enable$' -e '^$' "$unshipped" | LC_ALL=C sort -u > "$current" || true

  if $ship; then
    { printf '%s\n' "$header"; cat "$current"; } > "$shipped"
    printf '%s\n' "$header" > "$unshipped"
  else
    { printf '%s\n' "$header"; cat "$old_shipped"; } > "$shipped"
    { printf '%s\n' "$header"
      LC_ALL=C comm -13 "$old_shipped" "$current"
      LC_ALL=C comm -23 "$old_shipped" "$current" | sed 's/^/*REMOVED*/'
    } > "$unshipped"
  fi
  echo "   $(($(wc -l < "$shipped") - 1)) shipped, $(($(wc -l < "$unshipped") - 1)) unshipped"
  rm -f "$old_shipped" "$current"
done

# The check the build makes: no RS0016/RS0017 left.
for proj in "${projects[@]}"; do
  dotnet build "$proj" -c Release --no-restore -v quiet -nologo
done
