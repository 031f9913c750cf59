"""The DARTS-PT / GM-NAS comparison table from scripts/reproduce_selection_nb201.py's result.json files.

    .venv/bin/python scripts/report_selection_nb201.py [--work runs/selection_nb201] [--out docs/results/selection_nb201]

Writes <out>.md and <out>.json: per method the NB201 CIFAR-10 test accuracy of the selected
architecture and its share of parameter-free ops (mean ± std over the seeds that finished it), the
Kendall tau of each (sub-)supernet's ranking of the fixed 100-architecture sample, DARTS-PT's alpha
vs perturbation importance per edge, GM's distance matrices, and the costs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

LABELS = {"darts": "DARTS argmax", "darts-pt": "DARTS-PT", "blank-pt": "DARTS-PT fix-alpha", "rsps": "one-shot RSPS",
          "fs-rsps": "exhaustive few-shot + RSPS", "fs-darts": "exhaustive few-shot + DARTS",
          "gm-rsps": "GM + RSPS", "gm-darts": "GM + DARTS"}
PUBLISHED = {"darts": "54.30", "darts-pt": "≈88 (1st-order supernet)", "blank-pt": "higher than DARTS-PT (≈93)",
             "rsps": "≈87.7", "fs-rsps": "", "fs-darts": "", "gm-rsps": "above RSPS and few-shot RSPS",
             "gm-darts": "above DARTS and few-shot DARTS (≈93-94, unverified)"}
OPS = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def mean_std(values):
    values = np.array([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not len(values):
        return "–"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default="runs/selection_nb201")
    parser.add_argument("--out", default="docs/results/selection_nb201")
    args = parser.parse_args()
    seeds = {}
    for path in sorted(Path(args.work).glob("seed*/result.json")):
        data = json.loads(path.read_text())
        seeds[data["seed"]] = data
    if not seeds:
        raise SystemExit(f"no result.json under {args.work}")
    setting = next(iter(seeds.values()))["setting"]
    lines = ["# DARTS-PT and GM-NAS vs their one-shot and few-shot counterparts on NAS-Bench-201 (reduced)", "",
             f"Setting: supernet C={setting['C']}, N={setting['N']}, images pooled to {setting['image_size']}x"
             f"{setting['image_size']}, {setting['train_size']} CIFAR-10 training images split 50/50 (weights / "
             f"held-out), batch 64, SGD 0.025 cosine to 0.001, momentum 0.9, wd 3e-4, alpha Adam 3e-4; "
             f"{setting['epochs']} epochs per lineage for every method; DARTS-PT tunes {setting['pt_interval']} epoch(s) "
             f"per decision; exhaustive few-shot splits edge 1<-0 five ways after epoch {setting['fs_split'][0]}; GM "
             f"splits after epochs {setting['gm_splits']} (R={setting['batches']}), the 4 leaves restart for "
             f"{setting['after']} epochs. Seeds {sorted(seeds)} (paired: the same seed gives every method the same "
             f"data split and initial supernet). Ground truth: NB201 200-epoch CIFAR-10 test accuracy.",
             "", "Commands: `NASTK_DATA=../shared/benchmarks nice -n 5 .venv/bin/python scripts/reproduce_selection_nb201.py "
             "--seed S` for S in 0 1 2 (one process per seed, 1 thread each, on the 2-core CPU machine), then "
             "`.venv/bin/python scripts/report_selection_nb201.py`.", "",
             "| method | NB201 C10 test acc (mean ± std) | per seed | parameter-free ops | Kendall tau, 100 archs | published |",
             "|---|---|---|---|---|---|"]
    summary = {}
    for method, label in LABELS.items():
        rows = [seeds[s]["methods"][method] for s in sorted(seeds) if method in seeds[s]["methods"]]
        if not rows:
            continue
        accs = [r["test_acc"] for r in rows]
        free = [100 * r["parameter_free_share"] for r in rows]
        taus = [r.get("tau", r.get("tau_supernet")) for r in rows]
        summary[method] = {"test_acc": accs, "parameter_free_pct": free, "tau": taus, "n": len(rows)}
        lines.append(f"| {label} | {mean_std(accs)} | {', '.join(f'{a:.2f}' for a in accs)} | {mean_std(free)}% | "
                     f"{mean_std(taus)} | {PUBLISHED[method]} |")
    lines += ["", "Kendall tau: each (sub-)supernet's held-out single-path accuracy of the same 100 random "
              "architectures (few-shot: each architecture on the sub-supernet that holds it) against the table; "
              "for DARTS-PT rows, the supernet before selection.", ""]

    # DARTS-PT: alpha vs perturbation importance
    lines += ["## DARTS-PT: alpha magnitude vs perturbation importance", "",
              "Per decided edge: the op of largest softmax(alpha) at the decision, and the op whose removal costs "
              "the most held-out accuracy (the kept op). Importance = supernet accuracy - accuracy without the op.", "",
              "| seed | variant | edge | largest alpha | most important (kept) | importance of the largest-alpha op |",
              "|---|---|---|---|---|---|"]
    disagree, total = 0, 0
    for s in sorted(seeds):
        for method in ("darts-pt", "blank-pt"):
            row = seeds[s]["methods"].get(method)
            if not row:
                continue
            for record in row["decisions"]:
                if record["kind"] != "op":
                    continue
                names = list(record["scores"])
                weights = dict(zip(OPS, record["weights"]))
                top = max(names, key=lambda n: weights.get(n, -1))
                importance = {n: record["base_acc"] - record["scores"][n]["acc"] for n in names}
                total += 1
                disagree += top != record["chosen_name"]
                lines.append(f"| {s} | {LABELS[method]} | {record['name']} | {top} ({weights[top]:.3f}) | "
                             f"{record['chosen_name']} ({importance[record['chosen_name']]:+.2f}) | {importance[top]:+.2f} |")
    if total:
        lines += ["", f"The largest-alpha op was not the most important one on {disagree} of {total} decisions.", ""]

    # GM distance matrices
    lines += ["## GM: gradient-matching distances of the warmed-up root supernet", ""]
    for s in sorted(seeds):
        for method in ("gm-darts", "gm-rsps"):
            row = seeds[s]["methods"].get(method)
            if not row:
                continue
            root = next(split for split in row["splits"] if split["node"] == "root")
            chosen = next(c for c in root["info"]["candidates"] if c["decision"] == root["decision"])
            lines.append(f"Seed {s}, {LABELS[method]}: split edge {chosen['name']} into "
                         + " | ".join(",".join(chosen["options"][chosen["options"].index(OPS[o])] for o in g)
                                      for g in chosen["groups"]) + f" (split took {root['info']['seconds']:.1f} s for "
                         f"{len(root['info']['candidates'])} edges). Partitions of every edge: "
                         + "; ".join(f"{c['name']}: " + " | ".join(",".join(OPS[o] for o in g) for g in c["groups"])
                                     for c in root["info"]["candidates"]))
            lines += ["", "| | " + " | ".join(chosen["options"]) + " |", "|---" * (len(chosen["options"]) + 1) + "|"]
            for name, values in zip(chosen["options"], chosen["distances"]):
                lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
            lines.append("")
            together = sum(any({2, 3} <= set(g) for g in c["groups"]) for c in root["info"]["candidates"])
            lines += [f"The two convolutions fall in one group on {together} of {len(root['info']['candidates'])} edges.", ""]

    # costs
    lines += ["## Cost", ""]
    for s in sorted(seeds):
        row = seeds[s]["methods"].get("darts-pt")
        if row:
            per_decision = row["decision_s"] / max(1, len([r for r in row["decisions"] if r["kind"] == "op"]))
            lines.append(f"* seed {s} DARTS-PT: {row['validation_passes']} held-out passes in {row['decision_s']:.1f} s "
                         f"({per_decision:.1f} s per decision, {per_decision / 5 / row['validation_pass_s']:.2f} x one "
                         f"held-out pass ({row['validation_pass_s']:.2f} s) per candidate op; each decision also runs one "
                         f"unperturbed pass); tuning {row['tuning_s']:.0f} s.")
        for method in ("gm-darts", "gm-rsps"):
            row = seeds[s]["methods"].get(method)
            if row:
                times = [c["seconds"] for split in row["splits"] for c in split["info"].get("candidates", [])]
                lines.append(f"* seed {s} {LABELS[method]}: gradient matching {np.mean(times):.1f} s per edge "
                             f"(R={setting['batches']} batches x 5 ops), {len(times)} edges scored over "
                             f"{len(row['splits'])} splits.")
        walls = {m: seeds[s]["methods"][m]["wall_s"] for m in LABELS if m in seeds[s]["methods"]}
        lines.append(f"* seed {s} wall per method (s, shared cores): " + ", ".join(f"{m} {w:.0f}" for m, w in walls.items()))
    missing = [LABELS[m] for m in LABELS if any(m not in seeds[s]["methods"] for s in seeds)]
    lines += ["", "## What this reduced setting can and cannot show", "",
              "* It runs the real algorithms (bilevel DARTS, DARTS-PT's remove-one-op test with tuning between "
              "decisions, GM's gradient cosine distances, partitions, split schedule with inheritance and restart, "
              "RSPS' random-architecture selection) on the real NB201 ground truth, paired over seeds.",
              "* It cannot show DARTS' published collapse (54.30): at C=8, N=1, 16x16 images and 20 epochs on 2.5k "
              "images alpha stays near uniform, so DARTS' argmax is decided by small differences and lands on "
              "ordinary cells (89-94) rather than the all-skip cell. The improvement DARTS-PT shows here is "
              "therefore over a DARTS that has not collapsed; the published gap needs `--full` (C=16, N=5, 50 "
              "epochs on 25k+25k images, days on this CPU).",
              "* The Kendall taus are negative at this scale: after 20 short epochs the weight-sharing supernets "
              "rank parameter-free-heavy cells higher, which is also why RSPS' best-of-200 picks cells with 67-83% "
              "parameter-free ops. The sign matches the known early-training bias of weight sharing; its size is "
              "a property of this tiny regime, not of the methods at full scale.",
              "* Three seeds give a direction, not significance."]
    if missing:
        lines += ["", "Not finished when this report was written: " + ", ".join(missing) + "."]
    Path(args.out).with_suffix(".md").write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"setting": setting, "summary": summary,
                                                               "seeds": seeds}, indent=1))
    print("\n".join(lines[:20]))


if __name__ == "__main__":
    main()
