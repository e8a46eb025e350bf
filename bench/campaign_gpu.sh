#!/usr/bin/env bash
# One-shot campaign on a lent GPU: the diffusion model and its left-to-right twin (joint conditioning, IMDB, the
# shipped models' batch, learning rate and seed), to EPOCHS epochs or until BUDGET_S seconds have passed, whichever
# comes first. What comes back is left in $OUT, every file at most 16 MB:
#   $OUT/campaign/campaign.json              where each twin stands, measured seconds per step, the turns taken
#   $OUT/campaign/<twin>/metrics.jsonl       loss and the per-epoch validation records
#   $OUT/campaign/<twin>/epochs/epoch-NNN/   each epoch's fp16 export, weights in 15 MB shards
# A tensor larger than 15 MB alone (MiniLM's word embeddings: 23 MB in fp16) cannot be sharded by save_pretrained;
# such files are cut into byte parts and listed in $OUT/split-files.txt; `bash $OUT/join.sh` puts them back.
# The resumable checkpoints (weights and optimizer state) stay on the machine: a later session starts afresh, so
# choose EPOCHS and BUDGET_S to fit one session. Extra arguments go to `train_cli.py campaign`.
#
#   OUT=/tmp/out EPOCHS=8 BUDGET_S=540 bash bench/campaign_gpu.sh [--max-samples 2000 ...]
set -uo pipefail
: "${OUT:?set OUT to the folder whose files come back}"
EPOCHS=${EPOCHS:-8}
BUDGET_S=${BUDGET_S:-540}
WORK=${WORK:-/tmp/textdiff-campaign}
DATA=${DATA:-imdb}
cd "$(dirname "$0")/.."
python -c "import torch; print('cuda:', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
# SIGINT: train saves a checkpoint and the campaign records where it stands before it exits
timeout --signal=INT --kill-after=60 "$BUDGET_S" python train_cli.py campaign --out "$WORK" --epochs "$EPOCHS" \
    --chunk-epochs 1 --data "$DATA" --conditioning joint --batch-size 16 --lr 2e-4 --seed 0 --max-shard-size 15MB \
    --no-progress "$@"
echo "campaign exit status $?"

mkdir -p "$OUT/campaign"
cp "$WORK/campaign.json" "$OUT/campaign/" 2>/dev/null
for twin in diffusion ar; do
    mkdir -p "$OUT/campaign/$twin"
    cp "$WORK/$twin/metrics.jsonl" "$OUT/campaign/$twin/" 2>/dev/null
    [ -d "$WORK/$twin/epochs" ] && cp -r "$WORK/$twin/epochs" "$OUT/campaign/$twin/"
done
cd "$OUT" || exit 1
: > split-files.txt
find . -type f -size +15M -print | while read -r file; do
    split -b 15M -d -a 2 "$file" "$file.part-" && rm "$file" && echo "$file" >> split-files.txt
done
cat > join.sh <<'JOIN'
#!/usr/bin/env bash
# Put back the files bench/campaign_gpu.sh cut into 15 MB parts.
cd "$(dirname "$0")" && while read -r file; do cat "$file".part-* > "$file" && rm "$file".part-*; done < split-files.txt
JOIN
find . -type f -printf '%s %p\n' | sort -n | tail -5
