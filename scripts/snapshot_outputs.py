"""Hash the deterministic outputs of a fixed set of nastk commands, to check a refactor changes none.

Runs each command in a fresh temporary folder, drops the fields that are wall-clock by nature
(``started``/``finished``/``seconds``/``elapsed`` and the like, from journals and JSON outputs) and
prints one ``name sha256`` line per output. Run it on two checkouts and diff the two listings:

    NASTK_DATA=../shared/benchmarks PYTHONPATH=<checkout> python scripts/snapshot_outputs.py > before.txt
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ARCH = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
#: Keys whose values are wall-clock measurements, not results.
TIMING_KEYS = {"started", "finished", "seconds", "elapsed", "elapsed_s", "wall_s", "time", "timestamp",
               "created", "run_seconds", "eval_seconds", "duration", "time_s", "wall_time", "runtime_s",
               "total_seconds", "pass_seconds", "worker", "pid", "host", "nastk_version", "run_dir",
               "seconds_per_arch", "sha"}
#: Commands whose evaluation cost is measured (a proxy's wall time), not simulated from a table.
MEASURED_COST = {"search_synflow"}

COMMANDS = {
    "query_text": ["query", "--space", "nb201", "--dataset", "cifar10", "--arch", ARCH, "--epochs", "200"],
    "query_json": ["query", "--space", "nb201", "--dataset", "cifar100", "--arch", ARCH, "--format", "json"],
    "query_index": ["query", "--space", "nb201", "--dataset", "cifar10", "--index", "1234", "--format", "json"],
    "query_darts": ["query", "--space", "darts", "--index", "54", "--format", "json"],
    "search_re": ["search", "--space", "nb201", "--strategy", "re", "--benchmark", "nb201", "--dataset",
                  "cifar10", "--budget", "60", "--seed", "0", "--run-dir", "{tmp}/re", "--format", "json"],
    "search_ls": ["search", "--space", "nb201", "--strategy", "ls", "--benchmark", "nb201", "--dataset",
                  "cifar10", "--budget", "60", "--seed", "1", "--run-dir", "{tmp}/ls", "--format", "json"],
    "search_random": ["search", "--space", "nb201", "--strategy", "random", "--benchmark", "nb201", "--dataset",
                      "cifar100", "--budget", "40", "--seed", "2", "--run-dir", "{tmp}/rs", "--format", "json"],
    "search_tpe": ["search", "--space", "nb201", "--strategy", "bo-tpe", "--benchmark", "nb201", "--dataset",
                   "cifar10", "--budget", "30", "--seed", "0", "--run-dir", "{tmp}/tpe", "--format", "json"],
    "search_nsga2": ["search", "--space", "nb201", "--strategy", "nsga2", "--benchmark", "nb201", "--dataset",
                     "cifar10", "--budget", "40", "--seed", "0", "--objectives", "acc,latency",
                     "--run-dir", "{tmp}/moo", "--format", "json"],
    "search_synflow": ["search", "--space", "nb201", "--strategy", "re", "--evaluator", "proxy:synflow",
                       "--budget", "12", "--seed", "0", "--run-dir", "{tmp}/syn", "--format", "json"],
    "search_darts_bo": ["search", "--space", "darts", "--strategy", "re", "--benchmark", "darts", "--dataset", "cifar10", "--objective", "test600",
                        "--budget", "30", "--seed", "0", "--run-dir", "{tmp}/darts", "--format", "json"],
    "proxies_correlate": ["proxies", "correlate", "--space", "nb201", "--dataset", "cifar10", "--sample", "8",
                          "--proxies", "synflow,nwot,grad_sign,snip,jacob_cov,zen,fisher,params", "--seed", "0",
                          "--cache", "{tmp}/proxy_cache.jsonl", "--format", "json"],
    "search_robot": ["search", "--space", "nb201", "--strategy", "robot", "--benchmark", "nb201", "--dataset",
                     "cifar10", "--budget", "12", "--seed", "10", "--run-dir", "{tmp}/robot", "--format", "json"],
}


def scrub(value, measured: bool = False):
    """``value`` without wall-clock fields, with dict keys sorted (and, for a measured cost, without
    ``cost_s`` and the time column of trajectories)."""
    if isinstance(value, dict):
        drop = TIMING_KEYS | ({"cost_s"} if measured else set())
        out = {k: scrub(v, measured) for k, v in sorted(value.items()) if k not in drop}
        if measured and isinstance(out.get("trajectory"), list):
            out["trajectory"] = [point[1:] for point in out["trajectory"]]
        return out
    if isinstance(value, list):
        return [scrub(v, measured) for v in value]
    return value


def normalise(text: str, tmp: str, measured: bool = False) -> str:
    """JSON documents and JSON lines scrubbed; anything else as printed (the temporary folder renamed)."""
    text = text.replace(tmp, "<tmp>")
    try:
        return json.dumps(scrub(json.loads(text), measured), sort_keys=True)
    except ValueError:
        pass
    lines = []
    for line in text.splitlines():
        try:
            lines.append(json.dumps(scrub(json.loads(line), measured), sort_keys=True))
        except ValueError:
            lines.append(line)
    return "\n".join(lines)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="names of the commands to run (default: all)")
    parser.add_argument("--show", action="store_true", help="print the normalised outputs too")
    args = parser.parse_args()
    for name, command in COMMANDS.items():
        if args.only and name not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            argv = [part.format(tmp=tmp) for part in command]
            done = subprocess.run([sys.executable, "-m", "nastk", "-q", *argv], capture_output=True, text=True,
                                  env={**os.environ, "NASTK_CACHE_UNUSED": os.path.join(tmp, "cache")})
            measured = name in MEASURED_COST
            outputs = {"stdout": normalise(done.stdout, tmp, measured), "rc": str(done.returncode)}
            for journal in sorted(Path(tmp).rglob("*.jsonl")):
                outputs[str(journal.relative_to(tmp))] = normalise(journal.read_text(), tmp, measured)
            for summary in sorted(Path(tmp).rglob("summary.json")) + sorted(Path(tmp).rglob("config.json")):
                outputs[str(summary.relative_to(tmp))] = normalise(summary.read_text(), tmp, measured)
        for key, text in outputs.items():
            print(f"{name}:{key} {digest(text)}", flush=True)
            if args.show:
                print(text[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
