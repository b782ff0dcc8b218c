#!/bin/bash
# Nightly: evaluate every generator output that has no result yet (oldest first, all
# in one call) against a cached reference, append each to the history, redraw the
# trend, and exit 4 when a gate failed, after all of them are published.
#
# Parameters (environment variables):
#   REAL_SOURCE  the real embeddings (zarr path or URL) the reference is built from
#   REFERENCE    the cached reference directory; built once, reused every night
#   GENERATED    directory of generator outputs: one zarr store (*.zarr) or .npy file each
#   RESULTS      directory for results: RESULTS/NAME per output, RESULTS/history.jsonl,
#                RESULTS/trend/ (trend.png, history.html)
#   K            neighbour counts, e.g. 3,5,10 (the reference must hold them)
#   WORKERS      worker processes of the LocalCluster (default: all cores, one each; 0: in-process)
#   FAIL_ON_REGRESSION  Z: exit 4 when precision, recall, density or coverage falls by
#                more than Z standard errors against the previous run (default 3; empty: off)
#   FAIL_IF      gate expressions, e.g. "precision<0.6,recall<0.5" (default: none)
#   EVALUATE_OPTIONS  further options of evaluate, split at spaces, e.g. "--no-plots" or
#                "--precision float32 --tsne-samples 500" (default: none)
# The commands it runs:
#   largeemb reference build "$REAL_SOURCE" --out "$REFERENCE" --k "$K" --resume   (only when it holds no reference.json)
#   largeemb evaluate "$REFERENCE" OUTPUT... --out "$RESULTS" --k "$K" --workers "$WORKERS" \
#       --history "$RESULTS/history.jsonl" --resume [--fail-on-regression Z] [--fail-if EXPR] [$EVALUATE_OPTIONS]
#   largeemb history "$RESULTS/history.jsonl" --out "$RESULTS/trend"
#
# The reference holds the real set's radii for each k in K, so evaluate skips the
# real x real pass; its fingerprint is checked against the real store on every run.
# A reference whose source data changed is refused (exit 2): rebuild it with --force.
# --resume lets the next night (or a rerun) finish what a crash interrupted: a killed
# reference build, an output evaluated part-way; each history line is written once.
set -euo pipefail

REAL_SOURCE=${REAL_SOURCE:?set REAL_SOURCE to the real embeddings}
REFERENCE=${REFERENCE:?set REFERENCE to the cached reference directory}
GENERATED=${GENERATED:?set GENERATED to the directory of generator outputs}
RESULTS=${RESULTS:?set RESULTS to the results directory}
K=${K:-3,5,10}
WORKERS=${WORKERS:-$(nproc)}
FAIL_ON_REGRESSION=${FAIL_ON_REGRESSION-3}
FAIL_IF=${FAIL_IF:-}
read -r -a OPTIONS <<< "${EVALUATE_OPTIONS:-}"

mkdir -p "${RESULTS}"
exec 9>"${RESULTS}/.nightly.lock"
if ! flock -n 9; then
    echo "another nightly evaluation is still running; nothing to do" >&2
    exit 0
fi

# reference.json is the reference's commit mark (written last, published whole):
# a directory without it (a build that failed or was killed) is built again,
# resuming from the finished tasks a killed build left.
if [ ! -f "${REFERENCE}/reference.json" ]; then
    largeemb reference build "${REAL_SOURCE}" --out "${REFERENCE}" --k "${K}" --resume
fi

# The backlog: outputs with no published result, oldest first.
BACKLOG=()
while IFS= read -r path; do
    name=$(basename "${path}")
    name=${name%.zarr}
    name=${name%.npy}
    [ -f "${RESULTS}/${name}/metrics.json" ] || BACKLOG+=("${path}")
done < <(find "${GENERATED}" -mindepth 1 -maxdepth 1 \( -name '*.zarr' -o -name '*.npy' \) -printf '%T@ %p\n' | sort -n | cut -d' ' -f2-)

HISTORY="${RESULTS}/history.jsonl"
status=0
if [ "${#BACKLOG[@]}" -eq 0 ]; then
    echo "no generator output without a result in ${GENERATED}; nothing to evaluate" >&2
else
    GATES=()
    [ -n "${FAIL_ON_REGRESSION}" ] && GATES+=(--fail-on-regression "${FAIL_ON_REGRESSION}")
    [ -n "${FAIL_IF}" ] && GATES+=(--fail-if "${FAIL_IF}")
    WHERE=()
    [ "${WORKERS}" != 0 ] && WHERE+=(--workers "${WORKERS}")
    OUT="${RESULTS}"
    if [ "${#BACKLOG[@]}" -eq 1 ]; then  # one output: evaluate writes straight into --out
        name=$(basename "${BACKLOG[0]}")
        name=${name%.zarr}
        OUT="${RESULTS}/${name%.npy}"
    fi
    largeemb evaluate "${REFERENCE}" "${BACKLOG[@]}" --out "${OUT}" --k "${K}" "${WHERE[@]}" \
        --history "${HISTORY}" --resume "${GATES[@]}" "${OPTIONS[@]}" || status=$?
fi
if [ -f "${HISTORY}" ]; then
    largeemb history "${HISTORY}" --out "${RESULTS}/trend" > /dev/null
fi
exit "${status}"
