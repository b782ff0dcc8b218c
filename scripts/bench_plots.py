"""Time and memory of the plot stage, at two sizes, in one run.

    python scripts/bench_plots.py [--rows 200000] [--compare-rows 50000] [--dim 64] [--k 3,5,10]

For each size, writes a synthetic real/fake pair (n = m = rows) to zarr
stores and runs, in a fresh process, what `largeemb evaluate --out DIR`
runs: ``evaluate`` (metrics, then the projection pass), then the plot stage
(t-SNE of the joint subsample, projection.npz, every figure, published with
metrics.json), then `largeemb plot DIR`. Peak RSS is measured per stage by
resetting the kernel's high-water mark (Linux ``/proc/self/clear_refs``)
before it, and reported with the RSS the stage started from. The projection
pass is timed and measured once more on its own, after the metrics.

What to look for: the plot stage's time and extra memory should be about the
same at both sizes (t-SNE and the figures see fixed-size subsamples; only the
streamed histogram pass reads every row, in fixed blocks).
"""

from __future__ import annotations

import argparse
import tempfile

from _bench import run_child, synth_pair

CHILD = """
import os, time
import largeemb
from largeemb.report import stage as report
from largeemb.config import EvaluateConfig
from largeemb.io.output import METRICS_FILE, Staging
from largeemb.passes.projection import project
from largeemb.io.store import open_source

def rss_mib(field):
    with open('/proc/self/status') as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field)) / 1024

def stage(name, action):
    start_rss = rss_mib('VmRSS:')
    with open('/proc/self/clear_refs', 'w') as fh:
        fh.write('5')  # reset the peak RSS (VmHWM) to the current RSS
    t = time.perf_counter()
    value = action()
    _out[name] = dict(seconds=time.perf_counter() - t, start_mib=start_rss, peak_mib=rss_mib('VmHWM:'))
    return value

_out = {{}}
config = EvaluateConfig(k={k!r})
result = stage('evaluate', lambda: largeemb.evaluate({real!r}, {fake!r}, config))
_out['projection_in_evaluate_s'] = result.timings_s['projection']
real_src, fake_src = open_source({real!r}), open_source({fake!r})
stage('projection_pass', lambda: project(real_src, fake_src, result.real_moments, result.fake_moments,
      metric=config.metric, method=config.pca, plot_samples=config.plot_samples, tsne_samples=config.tsne_samples,
      seed=config.seed))

def plot_stage():
    with Staging({out!r}) as staging:
        result.add_timings(report.write_plots(result, staging.path).timings_s)
        staging.write_json(METRICS_FILE, result.to_dict())
        staging.publish()

stage('plot_stage', plot_stage)
_out['tsne_s'] = result.timings_s['tsne']
_out['figures_s'] = result.timings_s['plots']
stage('plot_command', lambda: report.redraw({out!r}))
_out['files'] = sorted(os.listdir({out!r}))
_out['metrics'] = result.metrics
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--compare-rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", default="3,5,10")
    parser.add_argument("--keep", help="copy the figures of the largest run into this directory")
    args = parser.parse_args()
    ks = tuple(int(v) for v in args.k.split(","))

    results = {}
    for rows in sorted({args.compare_rows, args.rows}):
        with tempfile.TemporaryDirectory() as tmp:
            real, fake = synth_pair(tmp, rows, args.dim)
            out = f"{tmp}/out"
            results[rows] = run_child(CHILD.format(k=ks, real=real, fake=fake, out=out))
            if args.keep and rows == args.rows:
                import shutil

                shutil.copytree(out, args.keep, dirs_exist_ok=True)

    print(f"dim {args.dim}, k {','.join(map(str, ks))}; n = m = rows; RSS in MiB (start -> peak of the stage)")
    print(f"{'stage':18}" + "".join(f"{f'{rows:,} rows':>28}" for rows in results))
    for name in ("evaluate", "projection_pass", "plot_stage", "plot_command"):
        cells = []
        for res in results.values():
            s = res[name]
            cells.append(f"{s['seconds']:8.1f} s {s['start_mib']:6.0f} -> {s['peak_mib']:6.0f}")
        print(f"{name:18}" + "".join(f"{c:>28}" for c in cells))
    for rows, res in results.items():
        print(
            f"{rows:,} rows: projection pass inside evaluate {res['projection_in_evaluate_s']:.1f} s; "
            f"plot stage = t-SNE {res['tsne_s']:.1f} s + figures {res['figures_s']:.1f} s; "
            f"extra RSS of the plot stage {res['plot_stage']['peak_mib'] - res['plot_stage']['start_mib']:.0f} MiB"
        )
    last = results[max(results)]
    print("files:", ", ".join(last["files"]))
    print("metrics:", {key: round(v, 4) for key, v in last["metrics"].items()})


if __name__ == "__main__":
    main()
