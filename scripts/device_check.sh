#!/usr/bin/env bash
# The checks and timings that need a CUDA GPU, in one call: scripts/device_check.sh [OUTDIR]
#
#   1. tests/test_gpu.py (the CUDA step equals the CPU step, same seed same result, checkpoints, the README snippet);
#   2. scripts/profile_step.py: words/s of the PyTorch path per batch size and where a batch's time goes;
#   3. attn-doc2vec bench on 20 Newsgroups: our default design on the GPU against gensim on every CPU core,
#      training and inference;
#   4. document-vector quality against batch size (20 Newsgroups, first 3,000 posts, 10 epochs, seed 0).
#
# Each step has a time limit so that the whole stays inside one lease; logs and result files land in
# OUTDIR (default $OUT, else results/device), packed into device.tar.gz beside one summary log (a lent
# machine returns few files). Data: ATTN_DOC2VEC_DATA (default ../shared/data) must hold 20news.jsonl.gz.
set -u
out=${1:-${OUT:-results/device}}
work=$(mktemp -d)
mkdir -p "$out"
py=${PYTHON:-python3}
dev=${DEVICE:-cuda}  # DEVICE=cpu tries the script on a machine without a GPU
data=${ATTN_DOC2VEC_DATA:-../shared/data}
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg ATTN_DOC2VEC_DATA=$data
log=$out/summary.log

step() {  # step LIMIT NAME COMMAND...: run with a time limit, keep its log, show its end
  local limit=$1 name=$2
  shift 2
  echo "== $name (limit ${limit} s, starting at ${SECONDS} s)" | tee -a "$log"
  timeout "$limit" "$@" >"$work/$name.log" 2>&1
  echo "   exit $? at ${SECONDS} s" | tee -a "$log"
  tail -n "${TAIL:-12}" "$work/$name.log" | tee -a "$log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$log"
"$py" -c "import torch, numpy, gensim; print('torch', torch.__version__, 'numpy', numpy.__version__,
'gensim', gensim.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$log"

step 150 test_gpu "$py" -m pytest -q -p no:cacheprovider tests/test_gpu.py
TAIL=30 step 100 profile "$py" scripts/profile_step.py --device "$dev" --data-dir "$data" --subset 2000 \
  --batch-sizes 1024 4096 16384 65536 --json "$work/profile.json"
TAIL=25 step 140 bench "$py" -c "import sys; from attn_doc2vec.cli.bench import main; sys.exit(main(sys.argv[1:]))" \
  --corpus 20news --data-dir "$data" --models gensim-dm-mean gensim-dbow ours-dm-attention --backends torch \
  --device "$dev" --torch-subset 1000000 --epochs 1 --repeats 1 --infer-docs 5000 --infer-epochs 10 \
  --json "$work/bench_speed_gpu.json" --markdown "$work/bench_speed_gpu.md"
for batch in 1024 16384; do
  TAIL=6 step 110 "quality-b$batch" "$py" scripts/compare_gensim.py --dataset 20news --data-dir "$data" \
    --subset 3000 --epochs 10 --seeds 0 --device "$dev" --models ours-dm-attention --set "batch_size=$batch" \
    --out "$work/20news-3000-gpu-b$batch"
done
tar -czf "$out/device.tar.gz" -C "$work" .
echo "== done at ${SECONDS} s; files in $out/device.tar.gz" | tee -a "$log"
