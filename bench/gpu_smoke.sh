#!/usr/bin/env bash
# One GRPO step with vLLM rollouts and DeepSpeed ZeRO-2 training on one GPU, timed: the first thing to run on a
# GPU machine. NOT RUN YET: this project's machines have no GPU (docs/scaling.md says what was verified where).
#
#   pip install -e '.[vllm,deepspeed]'          # the CUDA builds
#   bash bench/gpu_smoke.sh [model]             # default: the built-in smollm2-135m
#   TRAINER=deepspeed_zero3 bash bench/gpu_smoke.sh   # the same step under ZeRO-3 (default: deepspeed_zero2)
#
# Prints the step's phase times (time/generate, time/forward_backward, time/optimizer, time/weight_sync) from
# metrics.jsonl, and fails if the step did not finish.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-smollm2-135m}"
TRAINER="${TRAINER:-deepspeed_zero2}"
RUN="$(mktemp -d -t r1gym-gpu-smoke-XXXXXX)"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
model_args=("model.name_or_path=$MODEL")
[ -d "$MODEL" ] && model_args=(model=hf "model.name_or_path=$MODEL")
torchrun --nproc_per_node 1 -m r1gym.core.cli train experiment=demo "${model_args[@]}" \
  "trainer=$TRAINER" rollout=vllm rollout.params.gpu_memory_utilization=0.3 \
  trainer.max_steps=2 trainer.save_every=1000 eval.at_start=false eval.at_end=false logger=jsonl_only \
  "run_dir=$RUN"
python - "$RUN" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(f"{sys.argv[1]}/metrics.jsonl")]
for r in rows:
    times = {k: round(v, 3) for k, v in r.items() if k.startswith("time/")}
    print(f"step {r['step']}: reward {r.get('reward/mean'):.3f}", times)
assert json.load(open(f"{sys.argv[1]}/manifest.json"))["status"] == "finished"
print("gpu smoke: ok", sys.argv[1])
PY
