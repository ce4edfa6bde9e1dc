#!/usr/bin/env python3
"""Cut an engine's whole step log (the reference engine's --step-log) into each run dir's steps.csv.

The H200 runs of 2026-12-02 used a binary from before `live run` fetched GET /steps itself, so the
engine's one log covers every run of the session. A run's steps begin with the first step at or
after run.json's started_at (whole seconds) that prefills anything (a run ends with decodes, so
the previous run's tail never matches), and end half a second after its last request ended.

    python3 validation/h200/split_steps.py STEP_LOG INSTANCE RUN_DIR...
"""
import csv
import json
import sys
from datetime import datetime, timezone


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    log, instance, run_dirs = sys.argv[1], sys.argv[2], sys.argv[3:]
    with open(log, newline="") as f:
        steps = list(csv.DictReader(f))
    for run in run_dirs:
        meta = json.load(open(f"{run}/run.json"))
        started = datetime.strptime(meta["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        with open(f"{run}/requests.csv", newline="") as f:
            reqs = list(csv.DictReader(f))
        first = min(reqs, key=lambda r: float(r["send_s"]))
        start = next(
            (float(s["start_unix_s"]) for s in steps
             if float(s["start_unix_s"]) >= started and int(s["num_prefill_tokens"]) > 0),
            None,
        )
        if start is None:
            print(f"{run}: no prefill step after {meta['started_at']}", file=sys.stderr)
            return 1
        last_end = max(float(r["end_s"]) for r in reqs if r["end_s"])
        t0 = start - float(first["send_s"])
        rows = [s for s in steps if start <= float(s["start_unix_s"]) <= t0 + last_end + 0.5]
        with open(f"{run}/steps.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["instance", *steps[0].keys()])
            for s in rows:
                w.writerow([instance, *s.values()])
        print(f"{run}: {len(rows)} steps from {start:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
