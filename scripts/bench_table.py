"""Benchmark the NB201 table: cold conversion, cached load time, memory, single and vectorised query rates.

Targets (issue 2): cached load < 0.3 s, >= 100,000 single queries/s.
Usage: NASTK_DATA=../shared/benchmarks python scripts/bench_table.py [--out docs/results/nb201_table_performance]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

LOAD_SNIPPET = """
import json, resource, sys, time
t0 = time.perf_counter()
from nastk.benchmarks.nb201 import load_table
t1 = time.perf_counter()
table = load_table()
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "table_mb": sum(v.nbytes for v in table.columns.values()) / 2**20}))
"""


def measure_load(cache_dir: str, repeats: int):
    env = {**os.environ, "NASTK_CACHE": cache_dir}
    runs = [json.loads(subprocess.run([sys.executable, "-c", LOAD_SNIPPET], env=env, capture_output=True, text=True,
                                      check=True).stdout) for _ in range(repeats + 1)]
    return runs[0], runs[1:]  # the first run converts the CSV into the cache


def measure_queries(n_single: int, n_vector: int):
    from nastk.benchmarks.nb201 import load_table
    from nastk.protocol import Protocol
    from nastk.space import get_space

    table, space = load_table(), get_space("nb201")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(n_single)]
    protocol = Protocol("cifar10", "test", 200)
    table.accuracy(archs[0], protocol)
    start = time.perf_counter()
    for arch in archs:
        table.accuracy(arch, protocol)
    single = n_single / (time.perf_counter() - start)
    vector_archs = [space.sample(rng) for _ in range(n_vector)]
    start = time.perf_counter()
    table.accuracies(vector_archs, protocol)
    vector = n_vector / (time.perf_counter() - start)
    start = time.perf_counter()
    column = table.column(protocol)[np.arange(len(table))]
    whole = len(column) / (time.perf_counter() - start)
    return {"single_queries_per_s": single, "vectorised_queries_per_s": vector, "column_values_per_s": whole}


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/results/nb201_table_performance")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        cold, warm = measure_load(cache, args.repeats)
    queries = measure_queries(200_000, 200_000)
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "cold_conversion_s": cold["load_s"],
        "cached_load_s_median": float(np.median([w["load_s"] for w in warm])),
        "cached_load_s_max": float(max(w["load_s"] for w in warm)),
        "import_s_median": float(np.median([w["import_s"] for w in warm])),
        "process_max_rss_mb": float(np.median([w["max_rss_mb"] for w in warm])),
        "table_arrays_mb": warm[0]["table_mb"],
        **queries,
    }
    with open(args.out + ".json", "w") as handle:
        json.dump(result, handle, indent=2)
    lines = [
        "# NB201 table: load time, memory and query rates", "",
        f"Command: `NASTK_DATA=../shared/benchmarks .venv/bin/python scripts/bench_table.py`  ",
        f"Machine: {result['machine']} (the project's 2-core development machine, no GPU)", "",
        "| measure | value | target |", "|---|---|---|",
        f"| first load (sha256 check + CSV conversion into the cache) | {result['cold_conversion_s']:.3f} s | once |",
        f"| cached load, median of {args.repeats} fresh processes | {result['cached_load_s_median'] * 1000:.1f} ms (max {result['cached_load_s_max'] * 1000:.1f} ms) | < 300 ms |",
        f"| `import nastk.benchmarks.nb201` | {result['import_s_median'] * 1000:.0f} ms (numpy, networkx) | |",
        f"| table arrays in memory | {result['table_arrays_mb']:.2f} MiB | |",
        f"| peak RSS of a process that loads it | {result['process_max_rss_mb']:.0f} MiB (Python, numpy, networkx) | |",
        f"| single queries (`table.accuracy(arch, protocol)`) | {result['single_queries_per_s']:,.0f} /s | >= 100,000 /s |",
        f"| vectorised queries (`table.accuracies(archs, protocol)`) | {result['vectorised_queries_per_s']:,.0f} /s | |",
        f"| whole-column read | {result['column_values_per_s']:,.0f} values/s | |",
    ]
    with open(args.out + ".md", "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
