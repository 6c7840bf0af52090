#!/usr/bin/env bash
# One prepared GPU session (<= 9.5 minutes): everything this project checks on a CUDA machine.
#
#   OUT=/some/dir bash benchmarks/device_session.sh
#
# 1. the GPU tests (CuPy backend of hmat, the operator study on CUDA), alone;
# 2. benchmarks/gpu.py (hmat CuPy matvec/matmat vs the measured device bandwidth), alone;
# 3. the operator-learning studies on CUDA (issue 6): 1-D n=4096 and 2-D 64x64 with every
#    method, GridNet (nonlinear) on 1-D n=1024 with three seeds, the linear layer on 1-D n=1024
#    with three seeds, the dynamic H-layer on 1-D n=1024 -- five processes sharing the GPU at once (their training times are
#    therefore not quiet-machine numbers); each keeps results.partial.json if its time runs out;
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
timeout 110 $PY -m pytest -q -o addopts="" -p no:cacheprovider -m gpu \
    tests/hmat/test_gpu.py tests/pinn/test_gridnet.py > "$R/gpu_tests.txt" 2>&1
echo "pytest rc=$?"; tail -3 "$R/gpu_tests.txt"

stamp "gpu.py"
timeout 80 $PY benchmarks/gpu.py --sizes 20000 80000 --repeat 10 > "$R/gpu_bench.txt" 2>&1
echo "gpu.py rc=$?"; tail -12 "$R/gpu_bench.txt"

stamp "operator studies (5 processes)"
ALL=dense,hmatrix,hmatrix-posthoc,hmatrix+finetune,lowrank,svd,svd+finetune,prune,prune+finetune,oracle-hmatrix,oracle-svd,oracle-prune
TRAINED=dense,hmatrix,hmatrix-posthoc,hmatrix+finetune,lowrank,svd,svd+finetune,prune,prune+finetune
S="timeout ${STUDY_S:-270} $PY -m pinn operator --device cuda --quiet"
$S --dim 1 --n 4096 --ranks 1 --leaf-size 32 --adam-steps 3000 --lbfgs-steps 1000 \
   --finetune-steps 300 --methods $ALL --out "$R/d1_n4096" > "$R/d1_n4096.log" 2>&1 &
$S --dim 2 --n 4096 --ranks 4 --eta 2 --leaf-size 32 --adam-steps 3000 --lbfgs-steps 1000 \
   --finetune-steps 300 --methods $ALL --out "$R/d2_n4096" > "$R/d2_n4096.log" 2>&1 &
$S --dim 1 --n 1024 --net gridnet --ranks 1 --adam-steps 3000 --lbfgs-steps 500 \
   --finetune-steps 200 --methods $TRAINED --seeds 0,1,2 --out "$R/gridnet_d1_n1024" \
   > "$R/gridnet_d1_n1024.log" 2>&1 &
$S --dim 1 --n 1024 --ranks 1 --adam-steps 3000 --lbfgs-steps 1000 --finetune-steps 300 \
   --methods $ALL --seeds 0,1,2 --out "$R/d1_n1024_seeds" > "$R/d1_n1024_seeds.log" 2>&1 &
$S --dim 1 --n 1024 --ranks 1 --adam-steps 3000 --lbfgs-steps 1000 \
   --methods hmatrix-dynamic,hmatrix,oracle-hmatrix --out "$R/dyn_d1_n1024" > "$R/dyn_d1_n1024.log" 2>&1 &
wait
for d in d1_n4096 d2_n4096 gridnet_d1_n1024 d1_n1024_seeds dyn_d1_n1024; do
  echo "== $d"; ls "$R/$d" 2>/dev/null; tail -2 "$R/$d.log"
done

stamp "forward + step timings"
timeout 45 $PY benchmarks/operator.py --device cuda --batches 1,64 --repeat 20 \
    --out "$R/forward_cuda.json" --plot "$R/forward_cuda.png" > "$R/forward_cuda.txt" 2>&1
echo "operator.py rc=$?"; cat "$R/forward_cuda.txt"
timeout 40 $PY benchmarks/layer_step.py --device cuda > "$R/layer_step_cuda.txt" 2>&1
echo "layer_step.py rc=$?"; cat "$R/layer_step_cuda.txt"

stamp done
tar czf "$OUT/results.tgz" -C "$OUT" r
