#!/usr/bin/env python3
"""The held-out error table of one or more H200 model shapes, from each run's validation.json
(written by `modelsguard validate`, see validate-all.sh): signed simulator error per run and the
median |error| per column, as Markdown.

    python3 validation/h200/error_table.py [LABEL...]     # default: llama8b qwen7b
"""
import glob
import json
import os
import statistics
import sys

COLUMNS = [("ttft", "p50"), ("ttft", "p90"), ("tpot", "p50"), ("itl", "p50"), ("e2e", "p50"), ("e2e", "p90")]


def row(path):
    d = json.load(open(path))
    lat = {(x["metric"], x["percentile"]): x["rel_error"] for x in d["latencies"]}
    thr = {x["metric"]: x["rel_error"] for x in d["throughput"]}
    return [lat.get(c) for c in COLUMNS] + [thr.get("request_throughput")]


def main(labels):
    header = ["TTFT p50", "TTFT p90", "TPOT p50", "ITL p50", "E2E p50", "E2E p90", "req/s"]
    for label in labels:
        runs = sorted(glob.glob(f"validation/h200/{label}/*/validation/validation.json"))
        if not runs:
            print(f"{label}: no validation.json (run validate-all.sh first)", file=sys.stderr)
            continue
        print(f"\n{label}\n\n| held-out run | " + " | ".join(header) + " |")
        print("|---" * (len(header) + 1) + "|")
        cols = [[] for _ in header]
        for path in runs:
            name = path.split("/")[3]
            values = row(path)
            cells = []
            for i, v in enumerate(values):
                if v is None:
                    cells.append("-")
                else:
                    cols[i].append(abs(v))
                    cells.append(f"{v * 100:+.1f}%")
            print(f"| {name} | " + " | ".join(cells) + " |")
        med = [f"**{statistics.median(c) * 100:.1f}%**" if c else "-" for c in cols]
        print("| **median \\|error\\|** | " + " | ".join(med) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["llama8b", "qwen7b"])
