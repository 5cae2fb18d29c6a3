#!/usr/bin/env bash
# The one prepared script of a GPU session (docs/scaling.md, "Measuring your machine"). In order:
#   pytest       the unit tests of the code that runs on the GPU (CUDA cases included), fast ones only
#   jaccard      pseudo-labels at 20,000 x 2048 with the features on CUDA: (Jaccard + DBSCAN) / bare kNN,
#                checked against the scipy backend
#   step_cl      train_step: CMC and SCA steps vs the bare ResNet-50, 288x144, 32+32+32 images, bf16,
#                channels_last
#   step_nocl    the same without channels_last (CMC step and bare backbone only)
#   sysu_scale   the sysu preset on a SYSU-MM01-sized synthetic set: one epoch of every stage (40 CMC and
#                120 SCA steps timed, scaled to the full epochs), the evaluation, the input pipeline, and
#                the projected wall time of the whole schedule
#   step_compile train_step with torch.compile (model.compile: true), CMC step and bare backbone
# Every part has a time limit, capped by what is left of BUDGET seconds (default 570: the device
# tool's command limit is 600), so the summary at the end always prints. Each part writes
# $OUT/<part>.txt (stdout) and $OUT/<part>.err (stderr); sysu_scale also $OUT/sysu_scale.json.
# Uses the machine's own python3 (torch, torchvision, scipy, scikit-learn, ...) with this checkout on
# PYTHONPATH, so nothing needs installing; nothing is downloaded.
set -u -o pipefail
OUT=${OUT:-gpu_check}
BUDGET=${BUDGET:-570}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export VIREID_CACHE_DIR=${VIREID_CACHE_DIR:-/tmp/vireid-cache}
START=$SECONDS
SUMMARY=()

part() {  # part NAME LIMIT_S COMMAND...: run with min(LIMIT_S, budget left - 15 s)
    local name=$1 limit=$2
    shift 2
    local left=$((BUDGET - (SECONDS - START) - 15))
    ((limit > left)) && limit=$left
    if ((limit < 20)); then
        SUMMARY+=("$name: skipped, the budget is spent")
        return
    fi
    local t0=$SECONDS
    echo "== $name (limit ${limit} s)"
    timeout -k 5 "$limit" "$@" >"$OUT/$name.txt" 2>"$OUT/$name.err"
    local rc=$?
    local how="rc $rc"
    ((rc == 124 || rc == 137)) && how="TIMED OUT (partial output kept)"
    SUMMARY+=("$name: $how, $((SECONDS - t0)) s")
}

STEP=(python3 benchmarks/train_step.py --arch resnet50 --height 288 --width 144 --device cuda --amp
      --batch 32 --iters 10 --rounds 3)

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, \
'cuda', torch.cuda.is_available())"
  echo "CPU cores: $(nproc)"; } 2>&1 | tee "$OUT/gpu.txt"

part pytest 60 env PYTHONPATH="$PYTHONPATH:$PWD/tests" python3 -m pytest -q -p no:cacheprovider -m "not slow" tests/test_knn.py tests/test_jaccard.py \
    tests/test_cluster_memory.py tests/test_models.py tests/test_extract.py tests/test_compile.py
part jaccard 80 python3 benchmarks/pseudo_labels.py --n 20000 --device cuda --repeat 3 --check
part step_cl 50 "${STEP[@]}" --channels-last
part step_nocl 35 "${STEP[@]}" --runs cmc,bare1
part sysu_scale 240 python3 benchmarks/sysu_scale.py --device cuda --data /tmp/vireid-sysu-scale \
    --cmc-iterations 40 --sca-iterations 120 --json "$OUT/sysu_scale.json"
part step_compile 100 "${STEP[@]}" --channels-last --compile --runs cmc,bare1

{ echo "== summary ($((SECONDS - START)) s; logs in $OUT)"
  cat "$OUT/gpu.txt"
  printf '%s\n' "${SUMMARY[@]}"
  echo "-- pytest:";       tail -n 1 "$OUT/pytest.txt" 2>/dev/null; echo
  echo "-- jaccard:";      grep -h "^ratio\|^check\|^bare exact\|^DBSCAN" "$OUT/jaccard.txt" 2>/dev/null
  for s in step_cl step_nocl step_compile; do
      echo "-- $s:"; grep -h "ms/iter\|^  ratio" "$OUT/$s.txt" 2>/dev/null
  done
  echo "-- sysu_scale:";   grep -h "^synthetic\|^timed\|^  \|^projected" "$OUT/sysu_scale.txt" 2>/dev/null
} | tee "$OUT/summary.txt"
