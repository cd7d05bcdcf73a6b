#!/usr/bin/env bash
# distgraph's GPU validation suite: one command, one report (markdown + JSON) under $OUT.
#
#   bash benchmarks/gpu_suite.sh              # on a GPU machine (no network needed)
#   bash benchmarks/gpu_suite.sh --dry-run    # CPU dry run: every stage's code, tiny sizes
#   DG_GPU_SUITE_DRY=1 bash benchmarks/gpu_suite.sh      # the same
#   bash benchmarks/gpu_suite.sh --fetch-wheels          # here, with network: MPI wheels
#                                                        # into build/gpu_wheels (ignored by git)
#
# Stages (each under its own time limit; a failing stage is recorded and the suite
# goes on; at most DG_GPU_SUITE_BUDGET seconds, 400 by default, 150 of them kept for the test
# stage, so that one 10-minute device call still has room for a rerun of the stages that
# failed with DG_GPU_SUITE_ONLY): env, nccl_1rank, nccl_2rank_1gpu
# (NCCL_MULTI_RANK_GPU_ENABLE=1; skipped with the reason on one GPU when NCCL < 2.30),
# mpi_staged_2rank (DISTGRAPH_MPI_CUDA_AWARE=0), bench_overhead, bench_mlp, bench_resnet18,
# bench_gpt_float32, bench_gpt_float16, bench_allreduce (world 1 where 2 ranks cannot share
# the GPU), then tests_gpu (pytest -m gpu -v, the longest, last).  See docs/gpu.md.
#
# Environment: OUT (report folder; default ./gpu_report), PYTHON (interpreter;
# default python3), DG_GPU_SUITE_BUDGET (seconds; default 400), DG_GPU_SUITE_ONLY
# (comma-separated stage names), DG_GPU_SUITE_USE_WHEELS=1 (use the wheels even
# when the interpreter's own mpi4py imports), DG_GPU_WHEELS (the wheels' folder; default
# build/gpu_wheels), DG_GPU_SUITE_VENV (the throw-away venv; default $TMPDIR/dg_gpu_suite_venv).
#
# MPI: the multi-rank stages need mpi4py and an mpiexec of the same MPI.  If the
# interpreter's mpi4py does not import, or no mpiexec is found, and the wheels folder
# holds the mpich and mpi4py wheels (--fetch-wheels), they are installed without
# network into a throw-away venv whose Python still sees every package of $PYTHON's
# environment (a .pth file adds its site-packages: --system-site-packages alone would
# give the *base* interpreter's when $PYTHON is itself a venv's), and the suite runs
# with that venv's Python.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DRY=${DG_GPU_SUITE_DRY:-0}
FETCH=0
for arg in "$@"; do
    case "$arg" in
        --dry-run|--dry) DRY=1 ;;
        --fetch-wheels) FETCH=1 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "gpu_suite.sh: unknown argument '$arg' (expected --dry-run, --fetch-wheels)" >&2; exit 2 ;;
    esac
done
PY=${PYTHON:-python3}
WHEELS=${DG_GPU_WHEELS:-$ROOT/build/gpu_wheels}

if [ "$FETCH" = 1 ]; then
    # The GPU machine runs Python 3.12 (docs/gpu.md); the wheels must match it.
    PYVER=${DG_GPU_PYVER:-3.12}
    mkdir -p "$WHEELS"
    "$PY" -m pip download --no-deps --only-binary=:all: --python-version "$PYVER" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 \
        -d "$WHEELS" "mpi4py==${DG_MPI4PY_VERSION:-4.1.2}" "mpich==${DG_MPICH_VERSION:-5.0.2}" || exit 1
    ls -la "$WHEELS"
    echo "carry build/gpu_wheels with the device call (it is ignored by git through build/)"
    exit 0
fi

OUT=${OUT:-$ROOT/gpu_report}
mkdir -p "$OUT"
: > "$OUT/suite.log"  # one log for everything: these lines, then every stage's output as it runs
log() { echo "$*" | tee -a "$OUT/suite.log"; }
log "distgraph GPU suite: out=$OUT dry=$DRY python=$PY ($(command -v "$PY" || echo missing))"

have_mpi() {  # mpi4py imports, and an mpiexec sits next to the interpreter or on PATH
    "$1" -c "from mpi4py import MPI" >/dev/null 2>&1 || return 1
    [ -x "$(dirname "$("$1" -c 'import sys; print(sys.executable)')")/mpiexec" ] && return 0
    command -v mpiexec >/dev/null 2>&1
}

make_mpi_venv() {  # make_mpi_venv PYTHON VENV: a venv seeing PYTHON's packages, plus the MPI wheels
    local parent=$1 venv=$2 site
    rm -rf "$venv"
    "$parent" -m venv --system-site-packages --without-pip "$venv" || return 1
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return 1
    # Every site-packages folder of the parent environment, after the venv's own (so the
    # wheels' mpi4py wins over a broken one there); addsitedir also reads their .pth files.
    "$parent" -c 'import site, sys
for d in site.getsitepackages() + ([site.getusersitepackages()] if site.ENABLE_USER_SITE else []):
    print("import site; site.addsitedir(%r)" % d)' > "$site/dg_parent_env.pth" || return 1
    echo "MPI venv: $site/dg_parent_env.pth adds: $(grep -o "'.*'" "$site/dg_parent_env.pth" | tr '\n' ' ')"
    if ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then  # no pip in the parent env either
        "$venv/bin/python" -m ensurepip --default-pip >/dev/null 2>&1 || {
            echo "MPI venv: no pip in $parent's environment and ensurepip failed"; return 1; }
    fi
    # pip picks the wheels for this Python; a venv install keeps mpich's lib/libmpi.so and
    # bin/mpiexec in the venv (pip --target would drop them); --ignore-installed: the parent
    # environment's own (broken) mpi4py is visible here and must not count as installed
    "$venv/bin/python" -m pip install -q --ignore-installed --no-index --no-deps --no-cache-dir \
        --disable-pip-version-check --find-links "$WHEELS" mpich mpi4py
}

if [ "${DG_GPU_SUITE_USE_WHEELS:-0}" != 1 ] && have_mpi "$PY"; then
    log "MPI: mpi4py imports with $PY; mpiexec: $(dirname "$("$PY" -c 'import sys; print(sys.executable)')")/mpiexec or $(command -v mpiexec)"
elif ls "$WHEELS"/mpich-*.whl "$WHEELS"/mpi4py-*.whl >/dev/null 2>&1; then
    VENV=${DG_GPU_SUITE_VENV:-${TMPDIR:-/tmp}/dg_gpu_suite_venv}
    log "MPI: not usable with $PY; installing $WHEELS into $VENV (no network)"
    if (set -o pipefail; make_mpi_venv "$PY" "$VENV" 2>&1 | tee -a "$OUT/suite.log"); then
        PY="$VENV/bin/python"
        have_mpi "$PY" && log "MPI: ready ($PY, $VENV/bin/mpiexec)" ||
            log "MPI: STILL NOT USABLE after installing the wheels; multi-rank stages will fail"
    else
        log "MPI: installing the wheels FAILED; multi-rank stages will be skipped or fail"
    fi
else
    log "MPI: mpi4py does not import with $PY or no mpiexec found, and $WHEELS has no"
    log "     wheels: multi-rank stages will be skipped (run --fetch-wheels with network first)"
fi

ARGS=(--out "$OUT" --budget "${DG_GPU_SUITE_BUDGET:-400}")
[ "$DRY" = 1 ] && ARGS+=(--dry)
[ -n "${DG_GPU_SUITE_ONLY:-}" ] && ARGS+=(--only "$DG_GPU_SUITE_ONLY")
# Dry runs share small CPUs: one BLAS thread per process.
[ "$DRY" = 1 ] && export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
"$PY" benchmarks/gpu_suite.py "${ARGS[@]}"
rc=$?
echo "distgraph GPU suite: driver exit $rc; report in $OUT/report.md, $OUT/report.json, $OUT/suite.log"
exit $rc
