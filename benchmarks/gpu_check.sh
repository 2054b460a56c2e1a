#!/usr/bin/env bash
# GPU check for a CUDA machine, about 5 minutes (each step has its own time bound; 8 min at most):
#   1. preflight: exits 2 at once, with the reason, when CUDA is not usable (nothing else runs);
#   2. the GPU tests (pytest -k "cuda or gpu");
#   3. ENet-SAD 288x800 forward: FP32, FP16, CUDA graphs, TensorRT (torch-tensorrt or ONNX Runtime's provider);
#   4. Detector.detect() end to end on a 1640x590 frame (CUDA torch fp16 and ONNX Runtime CUDA);
#   5. 300 training iterations with AMP through lanesad-train (synthetic scenes, 288x800, batch 8);
#   6. results.md (+ one JSON and log per step) in OUT_DIR.
# Usage, from the repository root:  bash benchmarks/gpu_check.sh [OUT_DIR]   (default: $OUT, else gpu_results)
# Needs a CUDA build of torch; TensorRT rows need torch-tensorrt built for that torch (pip install
# torch-tensorrt==<matching version>) or onnxruntime-gpu with TensorRT, else they say "skipped".
# PYTHON picks the interpreter (default: python3). Exit status: 0 every step ran, 2 no CUDA,
# 1 a step failed (results.md still lists what ran).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT_DIR=${1:-${OUT:-gpu_results}}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"

"$PY" benchmarks/gpu_check.py preflight --out "$OUT_DIR" || exit 2

status=0
step() {  # step NAME SECONDS COMMAND...: run with a time bound, log to OUT_DIR/NAME.log
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most ${limit} s)"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT_DIR/$name.log" 2>&1
    local rc=$?
    tail -n 5 "$OUT_DIR/$name.log"
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || status=1
}

step tests 90 "$PY" -m pytest -q -p no:cacheprovider test/test_detector.py test/test_quantize.py -k "cuda or gpu"
step model 120 "$PY" benchmarks/gpu_check.py model --out "$OUT_DIR"
step detect 90 "$PY" benchmarks/gpu_check.py detect --out "$OUT_DIR"
train_dir=$(mktemp -d)
step train 150 "$PY" -m lanesad_ros.training --config config/train/enet_sad_default.yaml \
    name=gpu_check_amp train.device=cuda train.amp=true train.iterations=300 train.sad_start_iter=150 \
    train.num_threads=4 train.log_interval=50 train.checkpoint_interval=300 train.keep_checkpoints=false \
    "train.output_dir=$train_dir" model.input_size=[288,800] data.num_workers=4 eval.interval=100000 \
    "data.train=[{type: synthetic, name: synthetic_scenes, seed: 0, width: 960, height: 540}]" "data.val=[]" \
    export.path=null
grep -E "iteration|it/s|img/s|loss" "$OUT_DIR/train.log" | tail -n 3 | \
    "$PY" -c 'import json,sys; print(json.dumps({"summary": " / ".join(l.strip() for l in sys.stdin)}))' \
    >"$OUT_DIR/train.json"
rm -rf "$train_dir"
"$PY" benchmarks/gpu_check.py report --out "$OUT_DIR" >/dev/null
echo "results: $OUT_DIR/results.md"
exit $status
