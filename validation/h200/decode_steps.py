#!/usr/bin/env python3
"""Decode-only steps of engine step logs by batch size: count, median ms and coefficient of
variation, per steps.csv given (the graphs-vs-eager table of validation/README.md).

    python3 validation/h200/decode_steps.py validation/h200/llama8b-graphs/probe/steps.csv \
        validation/h200/llama8b/calibration/steps.csv
"""
import csv
import statistics
import sys

BUCKETS = [(1, 1, "1"), (2, 4, "2-4"), (5, 16, "5-16"), (17, 64, "17-64"), (65, 10**9, "65+")]


def main(paths):
    for path in paths:
        rows = list(csv.DictReader(open(path)))
        decode = [r for r in rows if int(r["num_prefill_tokens"]) == 0 and int(r["num_decode_seqs"]) > 0]
        graphs = sum(1 for r in rows if r.get("cuda_graph") == "1")
        captured = sum(int(r.get("captured") or 0) for r in rows)
        print(f"{path}: {len(rows)} steps, {graphs} graph replays, {captured} captured while serving")
        for lo, hi, name in BUCKETS:
            ms = [float(r["duration_s"]) * 1000 for r in decode if lo <= int(r["num_decode_seqs"]) <= hi]
            if ms:
                cv = statistics.pstdev(ms) / statistics.mean(ms)
                print(f"  {name:>6} seqs: {len(ms):5d} steps, median {statistics.median(ms):6.1f} ms, CV {cv:.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
