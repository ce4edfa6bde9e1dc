#!/usr/bin/env python3
"""Trim each run dir's steps.csv to the run's own window.

`live run` fetches every instance's GET /steps, and the reference engine returns its whole life,
so the steps.csv of a session's later runs also hold the earlier runs' steps. This keeps the rows
that start between one second before run.json's started_at (whole seconds) and one second after
the run's last request ended. Rows of every instance are kept (co-tenants' steps are the
colocation fit's raw material).

    python3 validation/h200/trim_steps.py RUN_DIR...
"""
import csv
import json
import sys
from datetime import datetime, timezone


def trim(run: str) -> int:
    meta = json.load(open(f"{run}/run.json"))
    started = datetime.strptime(meta["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    with open(f"{run}/requests.csv", newline="") as f:
        ends = [float(r["end_s"]) for r in csv.DictReader(f) if r["end_s"]]
    if not ends:
        print(f"{run}: no finished request", file=sys.stderr)
        return 1
    lo, hi = started - 1.0, started + max(ends) + 2.0  # started_at is truncated to the second
    with open(f"{run}/steps.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    col = header.index("start_unix_s")
    kept = [r for r in body if lo <= float(r[col]) <= hi]
    with open(f"{run}/steps.csv", "w", newline="") as f:
        csv.writer(f).writerows([header, *kept])
    print(f"{run}: kept {len(kept)} of {len(body)} steps")
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(max(trim(r) for r in sys.argv[1:]))
