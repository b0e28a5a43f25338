#!/usr/bin/env python3
"""Lists the tests a TRX file reports as skipped (outcome "NotExecuted"), with their reasons, and exits 1 if any of
them is one CI should have run.

CI installs every optional package the tests use (.ci/run), so a skipped test there means a package is missing or a
test skips wrongly. The one skip allowed is the opt-in soak (HostSoakTests, Category=Soak), which runs only when
RUNTIMEMEM_SOAK_MINUTES is set.

Usage: python3 .ci/skipped-tests.py results.trx   (exit 0: no skip but the soak; 1: other skips; 2: unreadable TRX)
"""
import sys
import xml.etree.ElementTree as ET

NS = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}

# (class prefix of the test name, start of the skip reason) of the skips CI accepts.
ALLOWED = [
    ("Runtime.Memory.Tests.Host.HostSoakTests.", "opt-in soak: "),
]


def skipped(path):
    for result in ET.parse(path).getroot().iterfind(".//t:UnitTestResult", NS):
        if result.get("outcome") != "NotExecuted":
            continue
        message = result.find(".//t:Message", NS)
        reason = (message.text or "").strip() if message is not None else ""
        yield result.get("testName") or "?", reason or "(no reason given)"


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    try:
        tests = list(skipped(argv[1]))
    except (OSError, ET.ParseError) as error:
        print(f"cannot read the TRX {argv[1]}: {error}", file=sys.stderr)
        return 2

    unexpected = {}
    for name, reason in tests:
        if any(name.startswith(prefix) and reason.startswith(start) for prefix, start in ALLOWED):
            print(f"skipped (opt-in, allowed): {name}: {reason}")
        else:
            unexpected.setdefault(reason, []).append(name)

    if not unexpected:
        return 0

    count = sum(len(names) for names in unexpected.values())
    print(f"== {count} skipped tests: CI installs every optional package, so every test but the opt-in soak must run")
    for reason, names in unexpected.items():
        print(f"SKIPPED {len(names)} because: {reason}")
        for name in sorted(names):
            print(f"    {name}")
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
