#!/usr/bin/env bash
# The whole Arctic-SnowCoder recipe, tiny, on one CPU machine, offline (about 6 minutes on 2 cores).
#
#   phase-1 data  : CPython 3.11.7's files (shipped: examples/tiny/corpus) -> ingest, filter, exact + near dedup,
#                   decontaminate, PII, group (2 MPI ranks)
#   tokenizer     : SentencePiece BPE (vocabulary 2,048) -> Megatron .bin/.idx
#   phase 1       : train a tiny Llama-style model with megatron-core (2 processes, gloo)
#   phase 2       : a tiny BERT annotator (trained here) scores every file; the top files per
#                   language become the phase-2 data; training continues from phase 1 with a re-warm-up
#   phase 3       : the phase-2 model, converted to Hugging Face format, served by `transformers serve`
#                   (a real local OpenAI-compatible server, CPU, bounded memory, stopped at the end)
#                   writes synthetic code files from seed snippets; the synthesis funnel drops what does
#                   not parse, is truncated, duplicated ... (the tiny model writes mostly noise: expect
#                   few or no files kept; the mix then says phase 3 trains on phase-2 data only); the
#                   mix (Python ~50%) feeds phase-3 training from phase 2's weights
#   final         : the phase-3 model in Hugging Face format, a few HumanEval+/MBPP+ problems, report.md
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
step() { echo; echo "=== $* === [${SECONDS}s]"; }  # [seconds since the start]
# Training paths under $W (the YAML files name examples/tiny/work). Phase 1 trains on its index;
# phases 2 and 3 on the blend files of selection and mix (their repetitions give the iterations).
train_paths() {
  local phase=$1
  local data="data.blend=[[1.0,$W/index/phase1]]"
  [ "$phase" = phase2 ] && data="data.blend_file=$W/phase2_data/blend.json"
  [ "$phase" = phase3 ] && data="data.blend_file=$W/phase3_mix/blend.json"
  echo "$data data.index_cache_dir=$W/index_cache" \
    "data.tokenizer_path=$W/tokenizer/code.model checkpoint.save=$W/checkpoints/$phase" \
    "logging.tensorboard_dir=$W/checkpoints/$phase/tensorboard logging.metrics_file=$W/checkpoints/$phase/metrics.jsonl"
}

step "0. inputs: pinned CPython 3.11.7 files standing in for GitHub repositories (examples/tiny/corpus)"
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
  out=$W/phase2_data budget_tokens=100000 repetition=4 index_prefix=$W/index/phase2
python tools/preprocess/build_index.py --input $W/phase2_data --tokenizer $W/tokenizer/code.model \
  --output-prefix $W/index/phase2 --workers 2

step "5. phase-2 continued pretraining from the phase-1 checkpoint"
torchrun --standalone --nproc-per-node "$NPROC" pretrain_gpt.py --config examples/tiny/phase2.yaml \
  $(train_paths phase2) checkpoint.load_from=$W/checkpoints/phase1

# A Hugging Face directory from a checkpoint, written aside and renamed when whole (skipped when there).
to_hf() {
  [ -d $W/hf/$1 ] && return 0
  rm -rf $W/hf/$1.partial
  python -m megatron_snow convert-to-hf --load $W/checkpoints/$1 --save $W/hf/$1.partial \
    --tokenizer $W/tokenizer/code.model --no-progress
  mv $W/hf/$1.partial $W/hf/$1
}

step "6. the phase-2 model in Hugging Face format"
to_hf phase2

step "7. phase 3: synthetic code files from a local OpenAI-compatible server (transformers serve, CPU)"
SERVER_PID=
stop_server() {  # the server runs in its own process group: end it and its children
  [ -n "$SERVER_PID" ] || return 0
  kill -TERM -- -"$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 20); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.5; done
  kill -KILL -- -"$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}
if [ -f $W/synthetic/manifest.json ]; then
  echo "synthesis done: $W/synthetic (no server started)"
else
  trap stop_server EXIT
  trap 'stop_server; exit 130' INT TERM
  PORT=$(python -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
  # address space bounded (the server was seen growing to 14 GB under load); a small KV cache
  setsid prlimit --as=$((6 * 1024 ** 3)) transformers serve $W/hf/phase2 --host 127.0.0.1 --port "$PORT" \
    --device cpu --continuous-batching --cb-num-blocks 128 --cb-block-size 32 --default-seed 0 \
    > $W/server.log 2>&1 &
  SERVER_PID=$!
  for i in $(seq 360); do
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "transformers serve exited:"; tail -n 20 $W/server.log; exit 1; }
    python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/health', timeout=2)" 2>/dev/null && break
    [ "$i" = 360 ] && { echo "transformers serve not healthy after 180 s"; tail -n 20 $W/server.log; exit 1; }
    sleep 0.5
  done
  echo "transformers serve (pid $SERVER_PID) on 127.0.0.1:$PORT"
  # completions API (the converted tokenizer has no chat template); greedy, short answers; a short template and
  # snippet so that prompt and answer fit the model's 256 tokens (a longer prompt would be counted as prompt_too_long)
  python -m megatron_snow synthesize phase2=$W/phase2_data out=$W/synthetic seeds_per_language=16 \
    prompt=examples/tiny/prompt.txt snippet_max_lines=6 snippet_max_chars=240 \
    server.base_url=http://127.0.0.1:$PORT/v1 server.api=completions \
    server.concurrency=8 server.timeout_s=120 server.max_attempts=2 sampling.max_tokens=64 progress=false
  stop_server
  trap - EXIT INT TERM
fi

step "8. phase 3: mix (Python ~50%, token budget) and continued pretraining from the phase-2 checkpoint"
SYN_INDEX=none  # synthesis kept no file: mix makes the blend from the phase-2 data alone (and says so)
if [ "$(python -c "import json; print(json.load(open('$W/synthetic/manifest.json'))['records'])")" != 0 ]; then
  python -m megatron_snow build-index --input $W/synthetic --tokenizer $W/tokenizer/code.model \
    --output-prefix $W/index/synthetic --workers 2
  SYN_INDEX=$W/index/synthetic
fi
# datasets of a language with under 5 documents or 1,024 tokens are left out (the trainer splits each into
# train/valid by documents: the one shell file of the tiny selection could not be)
python -m megatron_snow mix synthetic_index=$SYN_INDEX phase2_index=$W/index/phase2 out=$W/phase3_mix \
  budget_tokens=122880 min_documents=5 min_tokens=1024 progress=false
torchrun --standalone --nproc-per-node "$NPROC" pretrain_gpt.py --config examples/tiny/phase3.yaml \
  $(train_paths phase3) checkpoint.load_from=$W/checkpoints/phase2

step "9. the final model in Hugging Face format and a quick evaluation (a few HumanEval+/MBPP+ problems)"
to_hf phase3
[ -f $W/eval/phase3/results.json ] || python -m megatron_snow evaluate --model $W/hf/phase3 \
  --benchmarks humaneval+,mbpp+ --limit 3 --out $W/eval/phase3 --name tiny-phase3 \
  generation.backend=transformers generation.device=cpu generation.max_new_tokens=64 generation.batch_size=8

step "10. report"
python -m megatron_snow report $W

echo
echo "done in ${SECONDS}s: checkpoints in $W/checkpoints/{phase1,phase2,phase3}, Hugging Face models in $W/hf,"
echo "      funnels in $W/phase1/funnel.txt and $W/synthetic/funnel.json, mix in $W/phase3_mix/mix_report.json,"
echo "      evaluation in $W/eval/phase3/results.json, report in $W/report.md"
