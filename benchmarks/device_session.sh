#!/usr/bin/env bash
# One prepared GPU session (<= 9.5 minutes): everything this project checks on a CUDA machine.
# (The 2026-11-26 H200 run used the version of commit 7bb3ef7
# (`git show 7bb3ef7:benchmarks/device_session.sh`): its GPU tests hit their 110 s limit
# -- numba compile plus the complex128 build -- and its five concurrent studies finished only
# their dense rows in 270 s. This version gives the tests more time and runs only the n = 4096
# studies, from-scratch and dense-derived rows in separate processes.)
#
#   OUT=/some/dir bash benchmarks/device_session.sh
#
# 1. the GPU tests (CuPy backend of hmat, the operator study on CUDA), alone;
# 2. benchmarks/gpu.py (hmat CuPy matvec/matmat vs the measured device bandwidth), alone;
# 3. the operator-learning studies on CUDA (issue 6): 1-D n=4096 and 2-D 64x64, the from-scratch
#    rows and the dense-derived rows in separate processes -- four processes sharing the GPU
#    (their training times are therefore not quiet-machine numbers); each keeps
#    results.partial.json if its time runs out;
# 4. forward and training-step timings on CUDA (benchmarks/operator.py, benchmarks/layer_step.py),
#    alone.
# Everything lands in $OUT/results.tgz (and the log in $OUT/log.txt).
set -u
OUT=${OUT:-/tmp/device_out}
R=$OUT/r
mkdir -p "$R"
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 MPLBACKEND=Agg
PY=${PY:-python3}
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

stamp env
{ nvidia-smi -L; nproc; $PY -c "import torch, numpy, scipy, numba; print('torch', torch.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__, 'numba', numba.__version__, 'cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"; $PY -c "import cupy; print('cupy', cupy.__version__)"; } > "$R/env.txt" 2>&1
cat "$R/env.txt"

stamp "gpu tests"
timeout 150 $PY -m pytest -q -o addopts="" -p no:cacheprovider -m gpu \
    tests/hmat/test_gpu.py tests/pinn/test_gridnet.py > "$R/gpu_tests.txt" 2>&1
echo "pytest rc=$?"; tail -3 "$R/gpu_tests.txt"

stamp "gpu.py"
timeout 80 $PY benchmarks/gpu.py --sizes 20000 80000 --repeat 10 > "$R/gpu_bench.txt" 2>&1
echo "gpu.py rc=$?"; tail -12 "$R/gpu_bench.txt"

stamp "operator studies (4 processes)"
# run_study trains in a fixed order (dense first whenever a dense-derived method is asked for),
# so the from-scratch H rows and the dense-derived rows run in separate processes
S="timeout ${STUDY_S:-240} $PY -m pinn operator --device cuda"
D1="--dim 1 --n 4096 --ranks 1 --leaf-size 32"
D2="--dim 2 --n 4096 --ranks 4 --eta 2 --leaf-size 32"
STEPS="--adam-steps 3000 --lbfgs-steps 300 --finetune-steps 100"
SCRATCH=hmatrix,lowrank,oracle-hmatrix,oracle-svd,oracle-prune
FROM_DENSE=dense,hmatrix-posthoc,hmatrix+finetune,svd,prune
$S $D1 $STEPS --methods $SCRATCH --out "$R/d1_n4096_scratch" > "$R/d1_n4096_scratch.log" 2>&1 &
$S $D2 $STEPS --methods $SCRATCH --out "$R/d2_n4096_scratch" > "$R/d2_n4096_scratch.log" 2>&1 &
$S $D1 $STEPS --methods $FROM_DENSE --out "$R/d1_n4096_dense" > "$R/d1_n4096_dense.log" 2>&1 &
$S $D2 $STEPS --methods $FROM_DENSE --out "$R/d2_n4096_dense" > "$R/d2_n4096_dense.log" 2>&1 &
wait
for d in d1_n4096_scratch d2_n4096_scratch d1_n4096_dense d2_n4096_dense; do
  echo "== $d"; ls "$R/$d" 2>/dev/null; grep '^\[' "$R/$d.log" | tail -6
done

stamp "forward + step timings"
timeout 50 $PY benchmarks/operator.py --device cuda --batches 1,64 --repeat 20 \
    --out "$R/forward_cuda.json" --plot "$R/forward_cuda.png" > "$R/forward_cuda.txt" 2>&1
echo "operator.py rc=$?"; cat "$R/forward_cuda.txt"
timeout 30 $PY benchmarks/layer_step.py --device cuda > "$R/layer_step_cuda.txt" 2>&1
echo "layer_step.py rc=$?"; cat "$R/layer_step_cuda.txt"

stamp done
tar czf "$OUT/results.tgz" -C "$OUT" r
