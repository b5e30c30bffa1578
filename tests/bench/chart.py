#!/usr/bin/env python3
"""Draws ADD latency against the number of allocated addresses, roslan and the references, for `make bench`.

Reads the `occupancy` section that roslan-bench wrote to docs/benchmarks.json and writes
docs/benchmarks-add-latency.png, which docs/benchmarks.md embeds. No display is needed (Agg backend).

    chart.py [BENCHMARKS_JSON] [OUTPUT_PNG]
"""

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
from matplotlib.ticker import FuncFormatter  # noqa: E402

DOCS = Path(__file__).resolve().parents[2] / "docs"

# label in the JSON, legend text, colour, marker, value labels above (1) or below (-1) the points
SERIES = [
    ("roslan", "roslan (built-in host-local IPAM)", "#1f77b4", "o", -1),
    ("upstream", "upstream macvlan + host-local", "#d62728", "s", 1),
    ("debian", "Debian 1.1.1 macvlan + host-local", "#ff7f0e", "^", 1),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="?", type=Path, default=DOCS / "benchmarks.json")
    parser.add_argument("png", nargs="?", type=Path, default=DOCS / "benchmarks-add-latency.png")
    args = parser.parse_args()

    results = json.loads(args.json.read_text())
    rows = sorted(results["occupancy"]["rows"], key=lambda row: row["allocated"])
    if not rows:
        print(f"chart.py: no occupancy rows in {args.json}", file=sys.stderr)
        return 1
    allocated = [row["allocated"] for row in rows]

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    for key, legend, colour, marker, side in SERIES:
        add = [row[key]["add"] for row in rows]
        median = [a["median_ms"] for a in add]
        ax.fill_between(
            allocated,
            [a["p10_ms"] for a in add],
            [a["p90_ms"] for a in add],
            color=colour,
            alpha=0.15,
            linewidth=0,
        )
        ax.plot(allocated, median, color=colour, marker=marker, label=f"{legend}, median")
        for x, y in zip(allocated, median):
            ax.annotate(
                f"{y:g}",
                (x, y),
                textcoords="offset points",
                xytext=(0, 7 * side),
                ha="center",
                va="bottom" if side > 0 else "top",
                fontsize=8,
                color=colour,
            )

    n = rows[0]["roslan"]["add"]["n"]
    ax.set_title(f"CNI ADD latency against addresses already allocated ({n} ADDs per point)")
    ax.set_xlabel("addresses already allocated in the pool (reservation files)")
    ax.set_ylabel("ADD latency, ms (wall clock, exec included)")
    ax.set_xticks(allocated)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{int(x):,}"))
    ax.set_xlim(left=min(allocated) - 300, right=max(allocated) + 300)
    top = max(row[key]["add"]["p90_ms"] for row in rows for key, *_ in SERIES)
    # Room for the value labels above the highest points and below the lowest.
    ax.set_ylim(bottom=-top * 0.07, top=top * 1.12)
    ax.axhline(0, color="black", linewidth=0.6)
    ax.grid(True, alpha=0.3)
    # The shaded bands need a legend entry of their own.
    ax.fill_between([], [], [], color="grey", alpha=0.15, linewidth=0, label="10th-90th percentile")
    ax.legend(loc="upper left")
    machine = results.get("machine", {})
    fig.text(
        0.99,
        0.01,
        f"{machine.get('cpu', '')}, {machine.get('cpus', '?')} CPUs, kernel {machine.get('kernel', '')}",
        ha="right",
        va="bottom",
        fontsize=7,
        color="grey",
    )
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, metadata={"Software": None})
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
