#!/usr/bin/env bash
# The GPU path, checked in one go on a machine with a CUDA GPU and the project installed
# (`make test` installs the training extras into .venv). Nothing else needs this script.
#
#   bash scripts/gpu-check.sh [OUT_DIR]        # default: runs/gpu-check
#
# With RLAIF_DEVICE=cuda every step insists on the GPU (rlaif exits with an error instead of
# falling back to the CPU). It runs, on the embedded model converted to a transformers
# checkpoint: DPO (4 steps), the reward model (a few steps), GRPO with a rule as the reward
# (2 steps), and generation from the DPO checkpoint through `hf:`. Each step prints its wall
# time; the end prints the GPU, torch's view of it (bf16 or not) and the peak memory of each
# step, read from the step's own process. Meant to take well under 8 minutes on one GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu-check}
PY=${PYTHON:-.venv/bin/python}
# GPU_CHECK_ON_CPU=1 runs the same steps on the CPU: a check of this script, not of the GPU path
if [ "${GPU_CHECK_ON_CPU:-0}" = 1 ]; then
  export RLAIF_DEVICE=cpu
else
  export RLAIF_DEVICE=cuda
fi

if [ "$RLAIF_DEVICE" = cuda ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu-check: torch sees no CUDA GPU here ($("$PY" -c 'import torch; print(torch.__version__)')); run it on a GPU machine" >&2
  exit 1
fi
rm -rf "$OUT"
mkdir -p "$OUT"

# 48 preference pairs and their prompts from the effect tests' fixture (the model's own answers
# labelled by rule:words=8-40): real data, no download.
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

sys.path.insert(0, "tests")
from effect_support import rule_pairs

out = Path(sys.argv[1])
pairs = rule_pairs("train")
(out / "prefs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
(out / "prompts.jsonl").write_text(
    "".join(json.dumps({"prompt": p}) + "\n" for p in dict.fromkeys(p["prompt"] for p in pairs))
)
print(f"gpu-check: {len(pairs)} pairs")
EOF

step() {
  local name=$1
  shift
  local start
  start=$(date +%s)
  echo "== $name: $*"
  "$@" > "$OUT/$name.log" 2>&1 || { echo "gpu-check: $name failed; see $OUT/$name.log" >&2; tail -5 "$OUT/$name.log" >&2; exit 1; }
  echo "   $name: $(($(date +%s) - start)) s"
}

step dpo .venv/bin/rlaif train dpo --data "$OUT/prefs.jsonl" --out "$OUT/dpo" --max-steps 4 \
  --batch-size 4 --drift-prompts 0 --quiet
step reward .venv/bin/rlaif train reward --data "$OUT/prefs.jsonl" --out "$OUT/rm" --max-steps 4 \
  --batch-size 4 --quiet
step grpo .venv/bin/rlaif train grpo --data "$OUT/prompts.jsonl" --out "$OUT/grpo" --max-steps 2 \
  --judge rule:words=8-40 --num-generations 4 --quiet
step generate "$PY" - "$OUT" <<'EOF'
import sys, time
from rlaif.backends import load_backend

backend = load_backend(f"hf:{sys.argv[1]}/dpo")
start = time.time()
gen = backend.generate([{"role": "user", "content": "Name three primary colours."}], max_tokens=48)
print(f"hf: generation {gen.completion_tokens} tokens in {time.time() - start:.2f} s: {gen.text!r}")
EOF
tail -1 "$OUT/generate.log"

"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

import torch

from rlaif.backends.accelerator import device, use_bf16

out = Path(sys.argv[1])
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
print(f"GPU: {gpu}; rlaif device {device()}, bf16 {use_bf16()}")
for name in ("dpo", "rm", "grpo"):
    info = json.loads((out / name / "train.json").read_text())
    keys = ("world_size", "global_batch_size", "time_s", "train_seconds", "final_loss")
    print(name, {k: info[k] for k in keys if k in info})
EOF
