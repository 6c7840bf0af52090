#!/bin/bash
# The PINN study on a CUDA device (prepared for a lent GPU machine; NOT run in the session
# that wrote it -- no GPU was lent). Run from the repository root; writes $OUT (default
# benchmarks/pinn_study_cuda). Training runs on the GPU; compression (hmat), the NTK and the
# L2 evaluation of the records run on the CPU. Resumable: rerun the same command.
set -euo pipefail
OUT=${OUT:-benchmarks/pinn_study_cuda}
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
# a smoke run first (one seed, tiny schedules), then the full study on the device
python -m pinn compare --device cuda --width 16 --depth 3 --budgets 0.5 --seeds 0 \
    --adam-steps 50 --lbfgs-steps 20 --finetune-steps 10 --finetune-lbfgs-steps 5 \
    --no-progress --no-plots --out "$OUT/smoke"
timeout ${LIMIT_S:-480} python -m pinn compare --full --device cuda --workers 1 --threads 4 \
    --resume --no-progress --out "$OUT/full" || echo "full study stopped (time limit): partial results kept in $OUT/full"
