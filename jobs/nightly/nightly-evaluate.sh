#!/bin/bash
# Nightly: evaluate the newest generator output against a cached reference.
#
# Parameters (environment variables):
#   REAL_SOURCE  the real embeddings (zarr path or URL) the reference is built from
#   REFERENCE    the cached reference directory; built once, reused every night
#   GENERATED    directory holding one zarr store per generator run (*.zarr)
#   RESULTS      directory for results: one subdirectory per evaluated output
#   K            neighbour counts, e.g. 3,5,10 (the reference must hold them)
#   WORKERS      worker processes of the LocalCluster (default: all cores, one each)
# The commands it runs:
#   largeemb reference build "$REAL_SOURCE" --out "$REFERENCE" --k "$K"     (only when it holds no reference.json)
#   largeemb evaluate "$REFERENCE" "$NEWEST" --out "$RESULTS/NAME" --k "$K" --workers "$WORKERS" --resume
#
# The reference (README "Nightly use") holds the real set's radii for each k in K, so
# the nightly evaluate skips the real x real pass; its fingerprint is checked
# against the real store on every run.
# A reference whose source data changed is refused (exit 2): rebuild it with --force.
# --resume lets the next night (or a rerun) finish an evaluation a crash interrupted.
set -euo pipefail

REAL_SOURCE=${REAL_SOURCE:?set REAL_SOURCE to the real embeddings}
REFERENCE=${REFERENCE:?set REFERENCE to the cached reference directory}
GENERATED=${GENERATED:?set GENERATED to the directory of generator outputs}
RESULTS=${RESULTS:?set RESULTS to the results directory}
K=${K:-3,5,10}
WORKERS=${WORKERS:-$(nproc)}

mkdir -p "${RESULTS}"
exec 9>"${RESULTS}/.nightly.lock"
if ! flock -n 9; then
    echo "another nightly evaluation is still running; nothing to do" >&2
    exit 0
fi

# reference.json is the reference's commit mark (written last, published whole):
# a directory without it (a build that failed or was killed) is built again.
if [ ! -f "${REFERENCE}/reference.json" ]; then
    largeemb reference build "${REAL_SOURCE}" --out "${REFERENCE}" --k "${K}"
fi

NEWEST=$(find "${GENERATED}" -mindepth 1 -maxdepth 1 -name '*.zarr' -printf '%T@ %p\n' | sort -n | tail -n 1 | cut -d' ' -f2-)
if [ -z "${NEWEST}" ]; then
    echo "no generator output (*.zarr) in ${GENERATED}" >&2
    exit 1
fi
OUT="${RESULTS}/$(basename "${NEWEST}" .zarr)"
if [ -f "${OUT}/metrics.json" ]; then
    echo "already evaluated: ${OUT}/metrics.json" >&2
    exit 0
fi

largeemb evaluate "${REFERENCE}" "${NEWEST}" --out "${OUT}" --k "${K}" --workers "${WORKERS}" --resume
