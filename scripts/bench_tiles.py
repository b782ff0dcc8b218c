"""When grouped tiles pay: the radii and cross passes on clustered data with the groups' cost rule
(``largeemb.kernels.tiles.groups_pay``), with groups whenever they skip MIN_SKIPPED of the pairs
(the rule before it: ``TILE_COST = 0`` and ``SAMPLES_TILE_COST = 0``), and with pruning off.

    python scripts/bench_tiles.py [--repeats 3] [--cases 900x6/64,900x6/128,2400x24/512,20000x64/4096]

Each case is ROWSxDIM/BLOCK_ROWS: a real and a fake set of ROWS rows as ``largeemb synth`` writes them
(10 modes, the fake lacking 3 and shifted 0.05), evaluated in this process with per-sample values and
standard errors on, no plots. Prints, per case and setting, the median seconds of the radii and cross
passes (``metrics.json``'s timings) over ``--repeats`` runs, interleaved, and checks that the three
settings give the same metrics.
"""

from __future__ import annotations

import argparse
import statistics
import warnings

import largeemb
from largeemb.io.synth import DEFAULT_CHUNK_ROWS, synth_rows
from largeemb.kernels import tiles

SETTINGS = ("cost rule", "TILE_COST = 0", "no pruning")


def run(real, fake, block_rows: int, setting: str):
    rule = tiles.TILE_COST, tiles.SAMPLES_TILE_COST
    if setting == "TILE_COST = 0":
        tiles.TILE_COST = tiles.SAMPLES_TILE_COST = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = largeemb.evaluate(
                real, fake, k=5, block_rows=block_rows, plots=False, prune=setting != "no pruning"
            )
    finally:
        tiles.TILE_COST, tiles.SAMPLES_TILE_COST = rule
    timings = result.to_dict()["timings_s"]
    return timings["radii"] + timings["cross"], result.by_k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="900x6/64,900x6/128,2400x24/512,20000x64/4096")
    parser.add_argument("--tile-cost", type=float, default=tiles.TILE_COST, help="the rule's TILE_COST")
    parser.add_argument("--samples-tile-cost", type=float, default=tiles.SAMPLES_TILE_COST,
                        help="the rule's SAMPLES_TILE_COST (the cross pass with per-sample values)")
    args = parser.parse_args()
    tiles.TILE_COST, tiles.SAMPLES_TILE_COST = args.tile_cost, args.samples_tile_cost
    print(f"TILE_COST = {tiles.TILE_COST:g}, SAMPLES_TILE_COST = {tiles.SAMPLES_TILE_COST:g}, "
          f"PAIR_DIMS = {tiles.PAIR_DIMS}; radii + cross pass seconds, median")
    print(f"{'case':>16} " + " ".join(f"{s:>14}" for s in SETTINGS))
    for case in args.cases.split(","):
        shape, block_rows = case.split("/")
        rows, dim = map(int, shape.split("x"))
        real = synth_rows(0, rows, dim, 0, 0.0, 10, 0, DEFAULT_CHUNK_ROWS)
        fake = synth_rows(0, rows, dim, 1, 0.05, 10, 3, DEFAULT_CHUNK_ROWS)
        seconds = {s: [] for s in SETTINGS}
        metrics = {}
        for _ in range(args.repeats):
            for s in SETTINGS:
                t, metrics[s] = run(real, fake, int(block_rows), s)
                seconds[s].append(t)
        same = all(metrics[s] == metrics[SETTINGS[0]] for s in SETTINGS)
        print(f"{case:>16} " + " ".join(f"{statistics.median(seconds[s]):14.3f}" for s in SETTINGS)
              + ("" if same else "  METRICS DIFFER"))


if __name__ == "__main__":
    main()
