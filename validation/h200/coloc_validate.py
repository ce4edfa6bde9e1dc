#!/usr/bin/env python3
"""Live vs simulated differences for colocation and routing on one H200 (issue 9 item 7).

    python3 validation/h200/coloc_validate.py merge-ladder <probe dir> <ladder dir> <out dir>
        One requests.csv of both runs of the ladder (they ran at the same time against the same
        two engines, from the same instant), to replay in one simulation.
    python3 validation/h200/coloc_validate.py tables <results dir> <live coloc dir>
        Reads <results dir>/<contention model>/<run>/validation.json (from `modelsguard validate`,
        see coloc-validate.sh) and <results dir>/<model>/ladder/ (a simulated replay of the ladder)
        and prints the tables of validation/README.md: per model, overlapping minus staggered
        (two and three engines), the probe per ladder rung, and routing policy vs round-robin.

Differences are relative (overlapping / staggered - 1, policy / round-robin - 1) so the profile's
absolute level (the coloc runs' engines stepped ~15-20% faster than the profile's calibration run)
cancels; "size within 25%" reads |sim difference / live difference - 1| <= 0.25.
Python standard library only.
"""

import csv
import json
import os
import statistics as st
import sys

LAT = [("ttft", "p50"), ("ttft", "p90"), ("e2e", "p50"), ("e2e", "p90"), ("tpot", "p50"), ("itl", "p50")]
RUNGS = ["idle", "c1", "c4", "c16", "c64", "light"]
PHASE_S = 15.0


def merge_ladder(probe, ladder, out):
    os.makedirs(out, exist_ok=True)
    rows, header = [], None
    for run, offset in ((probe, 0), (ladder, 1_000_000)):
        with open(os.path.join(run, "requests.csv")) as f:
            r = csv.DictReader(f)
            header = r.fieldnames
            for x in r:
                x["id"] = str(int(x["id"]) + offset)  # both runs number their requests from 0
                rows.append(x)
    with open(os.path.join(out, "requests.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} requests -> {out}/requests.csv")


def lat(v, model, metric, pct):
    for x in v["latencies"]:
        if x["model"] == model and x["metric"] == metric and x["percentile"] == pct:
            return x["sim_s"], x["live_s"]
    return None, None


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        return None


def verdict(sim_d, live_d):
    if sim_d is None or live_d is None:
        return "-"
    sign = (sim_d > 0) == (live_d > 0) or (abs(sim_d) < 0.005 and abs(live_d) < 0.005)
    size = abs(live_d) > 1e-9 and abs(sim_d / live_d - 1.0) <= 0.25
    return ("sign ok" if sign else "SIGN WRONG") + (", size ok" if size else f", size off {((sim_d / live_d - 1.0) * 100 if live_d else 0):+.0f}%")


def diff_rows(base, other, models):
    """Rows (model, metric, live diff, sim diff, verdict) of other / base - 1."""
    out = []
    for m in models:
        for metric, pct in LAT:
            sb, lb = lat(base, m, metric, pct)
            so, lo = lat(other, m, metric, pct)
            if None in (sb, lb, so, lo) or not (sb and lb):
                continue
            ld, sd = lo / lb - 1.0, so / sb - 1.0
            out.append((m, f"{metric.upper()} {pct}", ld, sd, verdict(sd, ld)))
    return out


def print_diffs(title, rows, models_label="model"):
    print(f"\n{title}\n")
    print(f"| {models_label} | metric | live | sim | |")
    print("|---|---|---|---|---|")
    for m, metric, ld, sd, v in rows:
        print(f"| {m} | {metric} | {ld * 100:+.1f}% | {sd * 100:+.1f}% | {v} |")
    ok = sum(1 for r in rows if r[4].startswith("sign ok"))
    both = sum(1 for r in rows if r[4] == "sign ok, size ok")
    gap = st.median(abs(sd - ld) * 100 for _, _, ld, sd, _ in rows) if rows else float("nan")
    print(f"\nsign predicted {ok}/{len(rows)}, size within 25% {both}/{len(rows)}, median |sim - live| {gap:.1f} points")


def ladder_rungs(run_dir, t_shift=0.0):
    """Probe (llama) TPOT p50 and TTFT p50 per rung, by send time, from a run dir's requests.csv."""
    by = {r: ([], []) for r in RUNGS}
    with open(os.path.join(run_dir, "requests.csv")) as f:
        for x in csv.DictReader(f):
            if x["model"] != "llama-3.1-8b" or x["status"] != "ok":
                continue
            k = int((float(x["send_s"]) + t_shift) // PHASE_S)
            if 0 <= k < len(RUNGS):
                if x["tpot_s"]:
                    by[RUNGS[k]][0].append(float(x["tpot_s"]))
                by[RUNGS[k]][1].append(float(x["ttft_s"]))
    return {r: (st.median(a) if a else None, st.median(b) if b else None) for r, (a, b) in by.items()}


def tables(res, live_dir):
    models = [m for m in ("gpu_share", "time_slice", "serialize", "none") if os.path.isdir(os.path.join(res, m))]
    for cm in models:
        print(f"\n## contention model: {cm}")
        for n, names in (("two", ["llama-3.1-8b", "qwen2.5-7b"]), ("three", ["llama-3.1-8b", "qwen2.5-7b", "llama-8b-c"])):
            s = load(os.path.join(res, cm, f"{n}-staggered", "validation.json"))
            o = load(os.path.join(res, cm, f"{n}-overlapping", "validation.json"))
            if s and o:
                print_diffs(f"### {n} engines: overlapping vs staggered (overlapping / staggered - 1)", diff_rows(s, o, names))
        rr = load(os.path.join(res, cm, "round-robin", "validation.json"))
        for pol in ("queue-aware", "least-outstanding"):
            p = load(os.path.join(res, cm, pol, "validation.json"))
            if rr and p:
                rows = [r for r in diff_rows(rr, p, ["llama-3.1-8b"]) if r[1] != "ITL p50"]
                print_diffs(f"### routing: {pol} vs round-robin ({pol} / round-robin - 1)", rows, "policy")
        for sub, probe, label in (("ladder", "probe", "async on"), ("ladder-sync", "probe-sync", "async off")):
            sim_dir = os.path.join(res, cm, sub, "ladder")
            if not os.path.isfile(os.path.join(sim_dir, "requests.csv")):
                continue
            sim, live = ladder_rungs(sim_dir), ladder_rungs(os.path.join(live_dir, probe))
            print(f"\n### ladder, {label} (replayed): llama probe TPOT p50 ms per co-tenant rung, live vs sim, change vs the idle rung\n")
            print("| rung | live TPOT p50 | sim TPOT p50 | live vs idle | sim vs idle |")
            print("|---|---|---|---|---|")
            for r in RUNGS:
                (lt, _), (sm, _) = live[r], sim[r]
                if lt is None or sm is None:
                    continue
                print(f"| {r} | {lt * 1e3:.1f} | {sm * 1e3:.1f} | {(lt / live['idle'][0] - 1) * 100:+.1f}% | {(sm / sim['idle'][0] - 1) * 100:+.1f}% |")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "merge-ladder":
        merge_ladder(*sys.argv[2:5])
    elif len(sys.argv) == 4 and sys.argv[1] == "tables":
        tables(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
