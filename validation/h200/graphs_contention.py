#!/usr/bin/env python3
"""Contention between reference engines replaying CUDA graphs on one GPU (issue 9 item 5).

Reads run dirs whose steps.csv holds the steps of two or more engines sharing one GPU (each
engine's own step log, fetched by `live run`), predicts every step with its engine's
single-engine profile (its duration alone), counts the co-tenants in a step when it began (as the
simulator does, sim/src/cluster/contention.rs), and prints:

- per step kind (decode-only, with prefill) and number of busy co-tenants, the measured duration
  over the profile's prediction: median and count;
- the fit of the simulator's `time_slice` model, a step beside n busy co-tenants takes
      1 + n x (decode x (1 - s) + prefill x s)
  times its solo time, s its prefill share (prefill tokens x the profile's per-prefill-token cost
  over the predicted step): time-weighted least squares over every step that began beside a busy
  co-tenant, and each group's prediction under the fit next to its measurement.

Python standard library only. Usage, from the repository root:
    python3 validation/h200/graphs_contention.py --profiles profiles/cuda-graphs RUN_DIR...
A run's instances are matched to profiles by model: `llama-3.1-8b#0` -> H200-llama-3.1-8b-*.toml;
--model-of llama-8b-c=llama-3.1-8b maps a model without a profile to one that has.
"""

import argparse
import bisect
import csv
import glob
import os
import statistics as st
import tomllib


def predictors(pdir, aliases):
    """model -> (predict(row) -> seconds, per_prefill_token_s)."""
    out = {}
    for path in glob.glob(os.path.join(pdir, "H200-*-transformers-cb.toml")):
        with open(path, "rb") as f:
            prof = tomllib.load(f)
        c = prof["coefficients"]

        def predict(r, c=c):
            prefill = int(r["num_prefill_tokens"])
            # A graph step pays for its padded tokens; an eager one for its real ones.
            tokens = int(r["num_padded_tokens"]) if r["cuda_graph"] == "1" else prefill + int(r["num_decode_seqs"])
            return (
                c["fixed_s"]
                + c["per_prefill_token_s"] * prefill
                + c["per_decode_seq_s"] * tokens
                + c["per_kv_token_s"] * int(r["num_kv_tokens_read"])
            )

        out[prof["model"]] = (predict, c["per_prefill_token_s"])
    for alias, model in aliases.items():
        out[alias] = out[model]
    return out


def steps(run, profiles):
    """Every step: (kind, busy co-tenants at its start, duration, prediction, prefill share)."""
    by = {}
    for r in csv.DictReader(open(f"{run}/steps.csv")):
        by.setdefault(r["instance"], []).append((float(r["start_unix_s"]), float(r["duration_s"]), r))
    out = []
    for inst, rows in by.items():
        predict, per_prefill = profiles[inst.split("#")[0]]
        others = {j: sorted((s, d) for (s, d, _) in o) for j, o in by.items() if j != inst}
        starts = {j: [s for s, _ in o] for j, o in others.items()}
        for s, d, r in rows:
            n = 0
            for j, o in others.items():  # one engine's steps do not overlap: check its latest start
                k = bisect.bisect_right(starts[j], s) - 1
                n += k >= 0 and o[k][0] + o[k][1] > s
            p = predict(r)
            share = min(1.0, per_prefill * int(r["num_prefill_tokens"]) / p)
            kind = "prefill" if int(r["num_prefill_tokens"]) > 0 else "decode"
            out.append((kind, n, d, p, share))
    return out


def fit(rows):
    """Time-weighted least squares of d = p x (1 + n x (a x (1 - s) + b x s)) over busy steps."""
    xa = [(p * n * (1 - s), p * n * s, d - p) for _, n, d, p, s in rows if n > 0]
    saa = sum(x * x for x, _, _ in xa)
    sbb = sum(y * y for _, y, _ in xa)
    sab = sum(x * y for x, y, _ in xa)
    sat = sum(x * t for x, _, t in xa)
    sbt = sum(y * t for _, y, t in xa)
    det = saa * sbb - sab * sab
    return (sat * sbb - sbt * sab) / det, (sbt * saa - sat * sab) / det, len(xa)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--profiles", default="profiles/cuda-graphs", help="folder of the single-engine profiles")
    ap.add_argument("--model-of", action="append", default=[], help="ALIAS=MODEL: use MODEL's profile")
    ap.add_argument("--fit", action="append", default=None, help="fit on this run only (repeatable; default: every run)")
    ap.add_argument("runs", nargs="+", help="run dirs with steps.csv")
    a = ap.parse_args()
    profiles = predictors(a.profiles, dict(m.split("=", 1) for m in a.model_of))
    per_run = {run: steps(run, profiles) for run in a.runs}
    fit_runs = a.fit if a.fit is not None else a.runs
    dec, pre, n = fit([x for run in fit_runs for x in (per_run.get(run) or steps(run, profiles))])
    print(f"time_slice fit on {', '.join(fit_runs)} ({n} steps begun beside a busy co-tenant): "
          f"decode {dec:.3f}, prefill {pre:.3f}\n")
    print("| run | step | busy co-tenants | steps | measured / profile (median) | time_slice fit (median) |")
    print("|---|---|---|---|---|---|")
    for run, rows in per_run.items():
        groups = {}
        for kind, nb, d, p, s in rows:
            groups.setdefault((kind, nb), []).append((d / p, 1 + nb * (dec * (1 - s) + pre * s)))
        for (kind, nb), xs in sorted(groups.items()):
            if len(xs) < 5:
                continue
            print(f"| {run} | {kind} | {nb} | {len(xs)} | {st.median(m for m, _ in xs):.2f} | "
                  f"{st.median(f for _, f in xs):.2f} |")


if __name__ == "__main__":
    main()
