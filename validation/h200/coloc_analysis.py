#!/usr/bin/env python3
"""Colocation on one H200: what slows a step when another engine shares the GPU (issue 9 item 5).

Reads the engines' own step logs of the colocation runs (validation/h200/coloc/*/steps.csv: every
instance's steps, start and duration, prefill tokens, decode sequences) and the single-engine
profiles (profiles/H200-*-transformers-cb.toml), and prints:

1. the ladder table: per co-tenant rung (idle, 1, 4, 16, 64 closed-loop streams, light open loop),
   the llama probe's step durations (decode-only and with prefill) against the idle rung and the
   profile's prediction, next to the co-tenant's load (streams, busy fraction = share of wall time
   inside one of its steps, step lengths, prefill share), async batching on and off;
2. the per-step view: a step's duration over its profile prediction, split by its own kind and by
   the co-tenants' prefill share during it;
3. the fit of the simulator's `gpu_share` contention model from the async ladder only, and its check
   on the async-off ladder (predicted, not fitted);
4. the noise floor (the probe alone drifting between 3-s windows; qwen's prefill steps beside the
   probe vs its solo run), the burst runs' step times by how many co-tenants were in a step, and
   the routing runs' decode steps with and without co-tenant prefill.

The model (sim/src/cluster/contention.rs): a step is slowed by
    factor = 1 + slowdown * exposed_i * min(1, sum over busy co-tenants of gpu_share_o)
where s = the prefill-compute share of a step (profile's per_prefill_token_s x prefill tokens over
the modelled step time), gpu_share = s + (1 - s) * decode_gpu_share, and exposed = s with async
batching (the CPU preparing the next step hides the GPU wait of the rest of the step), gpu_share
without. decode_gpu_share is a guess (DECODE_GPU_SHARE below, see the README), not fitted.

Python standard library only (CI has no numpy). Usage, from the repository root:
    python3 validation/h200/coloc_analysis.py [--dir validation/h200/coloc] [--profiles profiles]
"""

import argparse
import csv
import math
import os
import random
import statistics as st
import sys
import tomllib

RUNGS = ["idle", "c1", "c4", "c16", "c64", "light"]
STREAMS = {"idle": "0", "c1": "1", "c4": "4", "c16": "16", "c64": "64", "light": "Poisson 0.3/s"}
PHASE_S = 15.0  # the runs used --set workload.phases.*.duration_s=15 (coloc/experiment.log)
SKIP_S = 1.0  # the first second of a rung is left out (the co-tenant's load changes then)
# GPU share of a step's non-prefill work on this eager engine: reading the weights once
# (~16 GB at 4.8 TB/s = ~3.3 ms) plus the KV copies, of a ~40 ms decode step. A guess from
# roofline arithmetic, NOT fitted (the async runs cannot identify it: the CPU hides it).
DECODE_GPU_SHARE = 0.10
PROBE = "llama-3.1-8b#0"
COTENANT = "qwen2.5-7b#0"


def load_profiles(pdir):
    """Profile coefficients by model name, from <pdir>/H200-*-transformers-cb.toml."""
    out = {}
    for name in sorted(os.listdir(pdir)):
        if name.startswith("H200-") and name.endswith("-transformers-cb.toml"):
            with open(os.path.join(pdir, name), "rb") as f:
                p = tomllib.load(f)
            out[p["model"]] = p["coefficients"]
    return out


def model_of(instance):
    base = instance.split("#")[0]
    return "llama-3.1-8b" if base == "llama-8b-c" else base  # same shape, same engine, same card


class Steps:
    """One run dir's steps.csv, with each step's profile prediction and prefill share."""

    def __init__(self, run_dir, profiles):
        self.by_inst = {}
        with open(os.path.join(run_dir, "steps.csv")) as f:
            for r in csv.DictReader(f):
                s = {
                    "inst": r["instance"],
                    "t": float(r["start_unix_s"]),
                    "d": float(r["duration_s"]),
                    "p": int(r["num_prefill_tokens"]),
                    "n": int(r["num_decode_seqs"]),
                    "kv": int(r["num_kv_tokens_read"]),
                }
                c = profiles[model_of(s["inst"])]
                pre = c["per_prefill_token_s"] * s["p"]
                s["pred"] = c["fixed_s"] + pre + c["per_decode_seq_s"] * s["n"] + c["per_kv_token_s"] * s["kv"]
                s["s"] = min(1.0, pre / s["pred"])
                self.by_inst.setdefault(s["inst"], []).append(s)
        for v in self.by_inst.values():
            v.sort(key=lambda s: s["t"])
        self.t_first = min(v[0]["t"] for v in self.by_inst.values())

    def others(self, inst):
        return sorted((s for i, v in self.by_inst.items() if i != inst for s in v), key=lambda s: s["t"])


def gpu_share(s):
    return s["s"] + (1.0 - s["s"]) * DECODE_GPU_SHARE


def annotate(steps):
    """Per step: busy (share of it overlapped by a co-tenant step), S (overlap-weighted co-tenant
    prefill share) and G (overlap-weighted co-tenant GPU share), summed over co-tenants."""
    for inst, mine in steps.by_inst.items():
        others = steps.others(inst)
        j0 = 0
        for s in mine:
            a0, a1 = s["t"], s["t"] + s["d"]
            busy = S = G = 0.0
            while j0 < len(others) and others[j0]["t"] + others[j0]["d"] + 5.0 < a0:
                j0 += 1  # no co-tenant step lasts 5 s
            for q in others[j0:]:
                if q["t"] >= a1:
                    break
                b1 = q["t"] + q["d"]
                if b1 <= a0:
                    continue
                f = (min(a1, b1) - max(a0, q["t"])) / s["d"]
                busy += f
                S += q["s"] * f
                G += gpu_share(q) * f
            s["busy"], s["S"], s["G"] = busy, S, G


def union_busy(steps_list, w0, w1):
    """Share of [w0, w1) inside a step (steps of one instance do not overlap)."""
    tot = 0.0
    for s in steps_list:
        a, b = max(w0, s["t"]), min(w1, s["t"] + s["d"])
        if b > a:
            tot += b - a
    return tot / (w1 - w0)


def med(xs):
    return st.median(xs) if xs else float("nan")


def fmt(x, scale=1e3, nd=1):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x * scale:.{nd}f}"


def ladder_table(run_dir, profiles, label):
    steps = Steps(run_dir, profiles)
    annotate(steps)
    probe = steps.by_inst[PROBE]
    co = steps.by_inst.get(COTENANT, [])
    t0 = probe[0]["t"]  # the probe's first request goes out at the run's start (+1 ms)
    rows = []
    idle = None
    for k, rung in enumerate(RUNGS):
        w0, w1 = t0 + PHASE_S * k + SKIP_S, t0 + PHASE_S * (k + 1)
        mine = [s for s in probe if w0 <= s["t"] < w1]
        theirs = [s for s in co if w0 <= s["t"] < w1]
        dec = [s for s in mine if s["p"] == 0]
        pre = [s for s in mine if s["p"] > 0]
        r = {
            "rung": rung,
            "dec": med([s["d"] for s in dec]),
            "dec_ratio": med([s["d"] / s["pred"] for s in dec]),
            "pre": med([s["d"] for s in pre]),
            "pre_ratio": med([s["d"] / s["pred"] for s in pre]),
            "n_pre": len(pre),
            "co_busy": union_busy(co, w0, w1),
            "co_step": med([s["d"] for s in theirs]),
            "co_batch": st.mean([s["n"] + (1 if s["p"] else 0) for s in theirs]) if theirs else 0.0,
            "co_prefill": sum(s["p"] for s in theirs),
            "co_S": (
                sum(s["s"] * s["d"] for s in theirs) / sum(s["d"] for s in theirs) if theirs else 0.0
            ),
            "overlap": st.mean([s["busy"] for s in mine]) if mine else 0.0,
        }
        if idle is None:
            idle = r
        rows.append(r)
    print(f"\n### Ladder, {label} ({os.path.basename(run_dir)}): llama probe (4 streams, 512 -> 128) vs qwen co-tenant\n")
    print(
        "| rung (co-tenant streams) | probe decode step ms (vs idle, / profile) | probe prefill step ms (n, / profile) "
        "| co-tenant busy | co-tenant step ms p50 | co-tenant batch | co-tenant prefill tokens | co-tenant prefill share "
        "| probe steps overlapped |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        rel = (r["dec"] / idle["dec"] - 1.0) * 100.0
        print(
            f"| {r['rung']} ({STREAMS[r['rung']]}) | {fmt(r['dec'])} ({rel:+.0f}%, {r['dec_ratio']:.2f}) "
            f"| {fmt(r['pre'])} ({r['n_pre']}, {fmt(r['pre_ratio'], 1, 2)}) | {r['co_busy']:.2f} | {fmt(r['co_step'])} "
            f"| {r['co_batch']:.1f} | {r['co_prefill']} | {r['co_S']:.2f} | {r['overlap']:.2f} |"
        )
    return steps


def drift_and_solo(steps, profiles, solo_dir):
    """The noise floor: the probe's decode steps in 3-s windows of the idle rung (no co-tenant
    request), and qwen's large prefill steps next to the (mostly decoding) probe vs its solo run."""
    probe = steps.by_inst[PROBE]
    t0 = probe[0]["t"]
    wins = []
    for w in range(5):
        xs = [s["d"] for s in probe if t0 + 3 * w <= s["t"] < t0 + 3 * (w + 1) and s["p"] == 0]
        wins.append(fmt(med(xs)))
    print(f"\nProbe decode step ms p50 in 3-s windows of the idle rung (co-tenant idle): {', '.join(wins)}")
    big = [s["d"] / s["pred"] for s in steps.by_inst.get(COTENANT, []) if s["p"] >= 1000]
    solo = Steps(solo_dir, profiles).by_inst
    solo_big = [s["d"] / s["pred"] for v in solo.values() for s in v if s["p"] >= 1000]
    print(
        f"qwen steps of >= 1000 prefill tokens over its profile: {med(big):.3f} beside the probe ({len(big)}), "
        f"{med(solo_big):.3f} in its solo calibration run ({len(solo_big)})"
    )


def decode_beside_decode(steps, label):
    """Probe decode steps with no co-tenant step during them vs wholly beside a decoding one."""
    probe = [s for s in steps.by_inst[PROBE] if s["p"] == 0]
    alone = [s["d"] for s in probe if s["busy"] < 0.01]
    beside = [s["d"] for s in probe if s["busy"] > 0.9 and s["S"] < 0.01]
    print(
        f"Probe decode step ms p50, {label}: {fmt(med(alone))} with no co-tenant step during it ({len(alone)}), "
        f"{fmt(med(beside))} wholly beside a decoding co-tenant ({len(beside)})"
    )


def per_step_view(steps, label):
    """Ratio to the profile by own step kind and co-tenants' prefill share S during the step."""
    print(f"\n### Per step, {label}: duration / profile prediction (median, n) by co-tenant prefill share S\n")
    bins = [(0.0, 0.01, "S = 0 (co-tenant idle or decoding)"), (0.01, 0.2, "0 < S < 0.2"), (0.2, 0.5, "0.2 <= S < 0.5"), (0.5, 9.0, "S >= 0.5")]
    print("| instance, own step | " + " | ".join(b[2] for b in bins) + " |")
    print("|---|" + "---|" * len(bins))
    for inst, mine in sorted(steps.by_inst.items()):
        for kind, sel in (("decode-only", lambda s: s["p"] == 0), ("with prefill", lambda s: s["p"] > 0)):
            cells = []
            for lo, hi, _ in bins:
                xs = [s["d"] / s["pred"] for s in mine if sel(s) and lo <= s["S"] < hi]
                cells.append(f"{med(xs):.2f} ({len(xs)})" if xs else "-")
            print(f"| {inst}, {kind} | " + " | ".join(cells) + " |")


def exposure(s, async_on):
    return s["s"] if async_on else gpu_share(s)


def fit_slowdown(steps, async_on):
    """Least squares of duration/prediction = b_group x (1 + K x exposed x min(1, G)), one
    baseline b per (instance, own step kind) (each engine's step time drifts with its memory
    share and the host; the profile came from a solo run), solved as: b from the steps with no
    co-tenant GPU load, then K through the origin on r/b - 1."""
    groups = {}
    for inst, mine in steps.by_inst.items():
        for s in mine:
            groups.setdefault((inst, s["p"] > 0), []).append(s)
    base = {}
    for g, xs in groups.items():
        quiet = [s["d"] / s["pred"] for s in xs if s["busy"] < 0.01 or s["S"] < 0.01]
        base[g] = st.mean(quiet) if quiet else st.mean(s["d"] / s["pred"] for s in xs)
    num = den = 0.0
    for g, xs in groups.items():
        for s in xs:
            f = exposure(s, async_on) * min(1.0, s["G"])
            num += (s["d"] / s["pred"] / base[g] - 1.0) * f
            den += f * f
    return (num / den if den > 0 else float("nan")), base, groups


def bootstrap(steps, async_on, n=200, seed=9):
    """2.5th and 97.5th percentiles of the fitted slowdown over resampled steps (fixed seed)."""
    rng = random.Random(seed)
    rows = []
    _, base, groups = fit_slowdown(steps, async_on)
    for g, xs in groups.items():
        for s in xs:
            rows.append((s["d"] / s["pred"] / base[g] - 1.0, exposure(s, async_on) * min(1.0, s["G"])))
    ks = []
    for _ in range(n):
        sample = [rows[rng.randrange(len(rows))] for _ in rows]
        den = sum(f * f for _, f in sample)
        if den > 0:
            ks.append(sum(y * f for y, f in sample) / den)
    ks.sort()
    return ks[int(0.025 * len(ks))], ks[int(0.975 * len(ks)) - 1]


def check(steps, async_on, k, label):
    """Predicted vs measured mean slowdown of the steps whose co-tenants were in prefill."""
    _, base, groups = fit_slowdown(steps, async_on)
    print(f"\n### Check, {label}: mean slowdown of steps overlapping a co-tenant's prefill (S >= 0.2), measured vs predicted with slowdown = {k:.2f}\n")
    print("| instance, own step | n | measured | predicted |")
    print("|---|---|---|---|")
    for (inst, pre), xs in sorted(groups.items()):
        sel = [s for s in xs if s["S"] >= 0.2]
        if not sel:
            continue
        meas = st.mean(s["d"] / s["pred"] / base[(inst, pre)] for s in sel) - 1.0
        pred = st.mean(k * exposure(s, async_on) * min(1.0, s["G"]) for s in sel)
        print(f"| {inst}, {'with prefill' if pre else 'decode-only'} | {len(sel)} | {meas * 100:+.1f}% | {pred * 100:+.1f}% |")


def busy_count(steps, inst, s):
    """How many co-tenants were inside a step for more than half of step `s`."""
    n = 0
    a0, a1 = s["t"], s["t"] + s["d"]
    for i, v in steps.by_inst.items():
        if i != inst:
            ov = sum(max(0.0, min(a1, q["t"] + q["d"]) - max(a0, q["t"])) for q in v if q["t"] < a1 and q["t"] + q["d"] > a0)
            n += ov / s["d"] > 0.5
    return n


def bursts(run_dir, profiles, label):
    """Median decode-only / with-prefill step ms per engine, and its decode steps without
    co-tenant prefill (S < 0.05) over the profile by how many co-tenants were in a step."""
    steps = Steps(run_dir, profiles)
    annotate(steps)
    cells = []
    for inst, v in sorted(steps.by_inst.items()):
        by_n = {}
        for s in v:
            if s["p"] == 0 and s["S"] < 0.05:
                by_n.setdefault(busy_count(steps, inst, s), []).append(s["d"] / s["pred"])
        ratios = ", ".join(f"{k}: {med(x):.2f} ({len(x)})" for k, x in sorted(by_n.items()))
        cells.append(
            f"{inst.split('#')[0]}: {fmt(med([s['d'] for s in v if s['p'] == 0]))} / "
            f"{fmt(med([s['d'] for s in v if s['p'] > 0]))} [{ratios}]"
        )
    print(f"| {label} | " + "; ".join(cells) + " |")


def routing(rdir, profiles):
    """Two llama engines behind the LB: each engine's decode steps over the profile, without and
    with co-tenant prefill (S < 0.01, S >= 0.2): the run-to-run level and the (absent) effect."""
    print("\n### Routing runs: decode step / profile per engine (median, n), co-tenant prefill share S < 0.01 vs >= 0.2\n")
    print("| policy | engine 0 | engine 1 |")
    print("|---|---|---|")
    for pol in ("round-robin", "queue-aware", "least-outstanding"):
        if not os.path.isdir(os.path.join(rdir, pol)):
            continue
        steps = Steps(os.path.join(rdir, pol), profiles)
        annotate(steps)
        cells = []
        for _, v in sorted(steps.by_inst.items()):
            q = [s["d"] / s["pred"] for s in v if s["p"] == 0 and s["S"] < 0.01]
            h = [s["d"] / s["pred"] for s in v if s["p"] == 0 and s["S"] >= 0.2]
            cells.append(f"{med(q):.2f} ({len(q)}) vs {med(h):.2f} ({len(h)})")
        print(f"| {pol} | " + " | ".join(cells) + " |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="validation/h200/coloc")
    ap.add_argument("--profiles", default="profiles")
    a = ap.parse_args()
    profiles = load_profiles(a.profiles)
    for m in ("llama-3.1-8b", "qwen2.5-7b"):
        if m not in profiles:
            sys.exit(f"{a.profiles}/H200-{m}-transformers-cb.toml is missing: run `modelsguard calibrate` first (see validation/README.md)")
    on = ladder_table(os.path.join(a.dir, "probe"), profiles, "async batching on")
    off = ladder_table(os.path.join(a.dir, "probe-sync"), profiles, "async batching off")
    drift_and_solo(on, profiles, os.path.join(os.path.dirname(a.dir.rstrip("/")), "qwen7b", "calibration"))
    decode_beside_decode(on, "async on")
    decode_beside_decode(off, "async off")
    per_step_view(on, "async batching on")
    per_step_view(off, "async batching off")
    k, _, _ = fit_slowdown(on, True)
    k_off, _, _ = fit_slowdown(off, False)
    lo, hi = bootstrap(on, True)
    print(f"\n### Fit (async-on ladder only): slowdown = {k:.2f}, 95% bootstrap interval {lo:.2f}..{hi:.2f} (decode_gpu_share = {DECODE_GPU_SHARE}, a guess)")
    print(f"Refitted on the async-off ladder instead (for comparison only, not used): slowdown = {k_off:.2f} ({(k / k_off - 1) * 100:+.0f}% from the async fit)")
    check(on, True, k, "async on (fitted)")
    check(off, False, k, "async off (predicted)")
    print("\n### Bursts: median decode-only / with-prefill step ms per engine [decode / profile by co-tenants in a step]\n")
    print("| run | engines |")
    print("|---|---|")
    for r in ("two-staggered", "two-overlapping", "three-staggered", "three-overlapping"):
        if os.path.isdir(os.path.join(a.dir, r)):
            bursts(os.path.join(a.dir, r), profiles, r)
    routing(os.path.join(os.path.dirname(a.dir.rstrip("/")), "routing"), profiles)


if __name__ == "__main__":
    main()
