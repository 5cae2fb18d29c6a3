#!/usr/bin/env bash
# The CUDA checks of one GPU machine, in one go (about 6 minutes on an H100): the CUDA unit tests,
# the smoke pipeline (including kill -9 + resume) on the GPU, the whole demo on the GPU with its
# timing, and the pseudo-label engine at 20k x 2048 with the features on the GPU (Jaccard pass on the
# GPU, then on the host for comparison).
# Uses the machine's own python3 (torch, torchvision, scikit-learn, ...) with this checkout on
# PYTHONPATH, so nothing needs installing. Logs go to $OUT (default: ./gpu_check).
set -u -o pipefail
OUT=${OUT:-gpu_check}; mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 VIREID_CACHE_DIR=/tmp/vireid-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())" | tee -a "$OUT/gpu.txt"
python3 -m pytest -q -p no:cacheprovider tests/test_knn.py tests/test_jaccard.py tests/test_cluster_memory.py \
    tests/test_models.py tests/test_extract.py tests/test_pipeline.py 2>&1 | tail -25 | tee "$OUT/pytest.txt"
( time python3 -m vireid demo --device cuda --output /tmp/demo-gpu ) > "$OUT/demo_full.log" 2>&1
grep -v "it/s]\|img/s]\|s/it]" "$OUT/demo_full.log" | tail -40 > "$OUT/demo.txt"
cp /tmp/demo-gpu/demo_summary.json "$OUT/" 2>/dev/null
# the Jaccard pass on the GPU (backend auto = torch), checked against the scipy backend, then on the host
python3 benchmarks/pseudo_labels.py --n 20000 --device cuda --repeat 3 --check 2>&1 | tail -20 | tee "$OUT/pseudo_labels_cuda.txt"
python3 benchmarks/pseudo_labels.py --n 20000 --device cuda --repeat 3 --backend scipy 2>&1 | tail -20 \
    | tee "$OUT/pseudo_labels_cuda_scipy.txt"
