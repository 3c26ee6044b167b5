#!/usr/bin/env bash
# The whole Arctic-SnowCoder recipe, tiny, on one CPU machine, offline (a few minutes on 2 cores).
#
#   phase-1 data  : local code -> ingest, filter, exact + near dedup, decontaminate, PII, group (2 MPI ranks)
#   tokenizer     : SentencePiece BPE (vocabulary 2,048) -> Megatron .bin/.idx
#   phase 1       : train a tiny Llama-style model with megatron-core (2 processes, gloo)
#   phase 2       : a tiny BERT annotator (trained here) scores every file; the top files per
#                   language become the phase-2 data; training continues from phase 1 with a re-warm-up
#
# Everything lands in examples/tiny/work/ (or $TINY_WORK). Re-running skips what is done (each
# step resumes). Set NPROC (training processes) and NRANKS (MPI ranks) to change the parallelism.
set -euo pipefail
cd "$(dirname "$0")/../.."
W=${TINY_WORK:-examples/tiny/work}
NPROC=${NPROC:-2}
NRANKS=${NRANKS:-2}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
step() { echo; echo "=== $* ==="; }
# Training paths under $W (the YAML files name examples/tiny/work). Phase 1 trains on its index;
# phase 2 on the blend file selection wrote (its repetitions give the number of iterations).
train_paths() {
  local phase=$1
  local data="data.blend=[[1.0,$W/index/phase1]]"
  [ "$phase" = phase2 ] && data="data.blend_file=$W/phase2_data/blend.json"
  echo "$data data.index_cache_dir=$W/index_cache" \
    "data.tokenizer_path=$W/tokenizer/code.model checkpoint.save=$W/checkpoints/$phase" \
    "logging.tensorboard_dir=$W/checkpoints/$phase/tensorboard logging.metrics_file=$W/checkpoints/$phase/metrics.jsonl"
}

step "0. inputs: local code standing in for GitHub repositories"
python examples/tiny/make_repos.py --out $W/repos --positives $W/positives

step "1. phase-1 data ($NRANKS MPI ranks)"
mpiexec -n "$NRANKS" python tools/preprocess/phase1.py --config examples/tiny/data_phase1.yaml \
  output_dir=$W/phase1 "ingest.sources=[{kind: directory, path: $W/repos, name: local, files_per_shard: 50}]"

step "2. tokenizer and phase-1 index"
[ -f $W/tokenizer/code.model ] || python tools/preprocess/train_tokenizer.py \
  --input $W/phase1/07_grouped --output $W/tokenizer/code.model vocab_size=2048 num_threads=1
python tools/preprocess/build_index.py --input $W/phase1/07_grouped --tokenizer $W/tokenizer/code.model \
  --output-prefix $W/index/phase1 --workers 2
python tools/preprocess/build_index.py --verify $W/index/phase1 --sample 4 | tail -n 1

step "3. phase-1 pretraining ($NPROC processes)"
python tools/model_info.py --config examples/tiny/phase1.yaml $(train_paths phase1)
torchrun --standalone --nproc-per-node "$NPROC" pretrain_gpt.py --config examples/tiny/phase1.yaml $(train_paths phase1)

step "4. phase 2: quality annotator (tiny BERT from scratch; the recipe uses arctic-embed-m)"
[ -f $W/encoder/config.json ] || python tools/preprocess/make_tiny_encoder.py \
  "corpus=[$W/phase1/06_pii]" out=$W/encoder max_positions=128
[ -f $W/annotator/config.json ] || python tools/preprocess/train_annotator.py --quiet \
  encoder=$W/encoder out=$W/annotator mode=full lr=0.001 epochs=8 batch_size=16 micro_batch_size=16 \
  max_length=128 val_fraction=0.15 test_fraction=0.15 data.corpus=$W/phase1/06_pii \
  "data.positives=[{path: $W/positives, kind: code}]"
mpiexec -n "$NRANKS" python tools/preprocess/annotate.py --quiet corpus=$W/phase1/06_pii model=$W/annotator batch_size=32
# the paper's Fig. 2: does the annotator prefer benchmark-like code? (benchmark copies shipped in the package)
python tools/preprocess/alignment.py --quiet model=$W/annotator corpus=$W/phase1/06_pii \
  negatives=100 max_length=128 out=$W/alignment.json
# the phase-2 data: blend.json names the index built next and its 4 repetitions
python tools/preprocess/select_data.py --quiet corpus=$W/phase1/06_pii tokenizer=$W/tokenizer/code.model \
  out=$W/phase2_data budget_tokens=30000 repetition=4 index_prefix=$W/index/phase2
python tools/preprocess/build_index.py --input $W/phase2_data --tokenizer $W/tokenizer/code.model \
  --output-prefix $W/index/phase2 --workers 2

step "5. phase-2 continued pretraining from the phase-1 checkpoint"
torchrun --standalone --nproc-per-node "$NPROC" pretrain_gpt.py --config examples/tiny/phase2.yaml \
  $(train_paths phase2) checkpoint.load_from=$W/checkpoints/phase1

echo
echo "done: checkpoints in $W/checkpoints/{phase1,phase2}, funnels in $W/phase1/funnel.txt,"
echo "      annotator metrics in $W/annotator, selection report in $W/phase2_data/selection_report.json"
