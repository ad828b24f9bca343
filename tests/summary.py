#!/usr/bin/env python3
"""Reads meson's testlog.json and prints what failed and what was skipped (with
the reason the test printed), then the closing line "N passed, N failed, N
skipped". Exits non-zero when a test failed or none ran."""
import json
import sys

passed, failed, skipped = [], [], []
with open(sys.argv[1]) as log:
    for line in log:
        t = json.loads(line)
        result = t["result"]
        if result in ("OK", "EXPECTEDFAIL"):
            passed.append(t)
        elif result == "SKIP":
            skipped.append(t)
        else:
            failed.append(t)

for t in failed:
    print(f"\n=== FAILED {t['name']} ({t['result']}) ===")
    tail = (t.get("stdout") or "").splitlines()[-25:]
    print("\n".join(tail))
for t in skipped:
    reasons = [l for l in (t.get("stdout") or "").splitlines() if l.startswith("SKIP")]
    print(f"skipped {t['name']}: {reasons[0] if reasons else 'no reason given'}")

line = f"{len(passed)} passed, {len(failed)} failed"
if skipped:
    line += f", {len(skipped)} skipped"
print(line)
sys.exit(1 if failed or not passed else 0)
