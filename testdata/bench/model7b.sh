#!/usr/bin/env bash
# Whole-model benchmark: a Llama-2-7B-shaped F16 checkpoint (32 layers, 224
# projection matrices of 4096×4096 and 11008×4096, decaying spectra), split at
# r = 128 in one streaming pass and merged back, against copying the files.
# Prints a table; the checkpoint is cached in $SORSA_BENCH_DIR (default
# /tmp/sorsa-bench, ~13 GiB; generating it takes a while the first time), its
# split beside it in <checkpoint>-out/ (another 13 GiB while it runs).
#   LAYERS=4 testdata/bench/model7b.sh     # a quicker run on the first 4 layers' shapes
#   PAIRS=4 testdata/bench/model7b.sh      # then 4 more cold copy/merge pairs
#   PAIRS=4 MERGE_ONLY=1 testdata/bench/model7b.sh  # only the pairs, on the split
#                                          # a previous run left in <checkpoint>-out/
#   PAIRS=3 MERGE_ONLY=1 PAIR_MODES="direct cached" testdata/bench/model7b.sh
#                                          # each pair merges twice, reading the
#                                          # residual with direct I/O and through
#                                          # the page cache
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="$root/bin"
dir="${SORSA_BENCH_DIR:-/tmp/sorsa-bench}"
layers="${LAYERS:-32}"
rank="${RANK:-128}"
model="$dir/llama7b-f16-L$layers"
case "${PAIRS:-0}" in
  ''|*[!0-9]*) echo "PAIRS=$PAIRS: want a number of copy/merge pairs" >&2; exit 2 ;;
esac
mkdir -p "$dir"
[ -n "${NO_BUILD:-}" ] || (cd "$root" && go build -o "$bin/" ./cmd/...)

if [ ! -f "$model/model.safetensors.index.json" ]; then
  echo "generating $model ..." >&2
  rm -rf "$model.tmp"
  "$bin/sorsa-testmodel" -preset 7b -layers "$layers" -dtype F16 -shards 3 -o "$model.tmp"
  mv "$model.tmp" "$model"
fi
size=$(du -sb "$model" | cut -f1)

measure() { # label, then the command; prints "wall_s maxrss_kib user_s sys_s"
  local label=$1; shift
  /usr/bin/time -f "%e %M %U %S" -o "$dir/$label.time" "$@" > "$dir/$label.out"
  cat "$dir/$label.time"
}

# Copy and merge are compared like for like: each starts with the page cache
# dropped (when this runs as root) and ends with its output on disk (merge
# fsyncs before renaming; the copy is followed by sync).
cold() {
  sync
  if [ -w /proc/sys/vm/drop_caches ]; then echo 3 > /proc/sys/vm/drop_caches; fi
}
cache_note="page cache dropped before each"
[ -w /proc/sys/vm/drop_caches ] || cache_note="page cache NOT dropped (not root)"
out="$model-out" # the split and the merge, beside their checkpoint

# pairs N: N rounds of a cold copy then a cold merge of the split for each
# of the --input-io modes in PAIR_MODES (default auto; e.g. "direct cached"
# to compare them, in alternating order from round to round), one table row
# per merge (the disk's speed drifts, so each merge is compared with the
# copy made just before it).
pairs() {
  [ "${1:-0}" -gt 0 ] || return 0
  printf '\n| pair | copy | merge (--input-io: what was used) | merge / copy | merge peak memory |\n|---|---|---|---|---|\n'
  for i in $(seq 1 "$1"); do
    cold
    read -r c_s _ _ _ < <(measure copy sh -c 'cp -r "$1" "$2" && sync' copy "$model" "$dir/copy")
    rm -rf "$dir/copy"
    read -r -a modes <<< "${PAIR_MODES:-auto}"
    if [ $((i % 2)) = 0 ]; then
      for ((a = 0, b = ${#modes[@]} - 1; a < b; a++, b--)); do t=${modes[a]}; modes[a]=${modes[b]}; modes[b]=$t; done
    fi
    for mode in "${modes[@]}"; do
      cold
      read -r m_s m_rss m_user m_sys < <(measure merge "$bin/sorsa-convert" merge "$out/split/residual" "$out/split/adapter" --input-io "$mode" --json -o "$out/merged")
      rm -rf "$out/merged"
      used=$(python3 -c "import json;print(json.load(open('$dir/merge.out'))['input_io'])")
      printf '| %d | %.1f s | %.1f s (%s: %s; CPU: user %.1f s, system %.1f s) | %.2f× | %.2f GiB |\n' "$i" "$c_s" "$m_s" "$mode" "$used" "$m_user" "$m_sys" "$(python3 -c "print($m_s/$c_s)")" "$(python3 -c "print($m_rss/1024/1024)")"
    done
  done
}
if [ -n "${MERGE_ONLY:-}" ]; then
  [ -f "$out/split/adapter/adapter_config.json" ] || { echo "MERGE_ONLY: no split in $out/split; run without it first" >&2; exit 1; }
  rm -rf "$out/merged" "$dir/copy"
  pairs "${PAIRS:-1}"
  exit 0
fi
rm -rf "$out" "$dir/copy"
cold
read -r copy_s _ copy_user copy_sys < <(measure copy sh -c 'cp -r "$1" "$2" && sync' copy "$model" "$dir/copy")
rm -rf "$dir/copy"
read -r split_s split_rss split_user split_sys < <(measure split "$bin/sorsa-convert" split "$model" -r "$rank" -t llama --svd randomized --json -o "$out/split")
cold
read -r merge_s merge_rss merge_user merge_sys < <(measure merge "$bin/sorsa-convert" merge "$out/split/residual" "$out/split/adapter" --json -o "$out/merged")
read -r verify_s verify_rss _ _ < <(measure verify "$bin/sorsa-convert" verify "$model" "$out/split/residual" "$out/split/adapter" --json)
rm -rf "$out/merged"
ntargets=$(python3 -c "import json;print(len(json.load(open('$dir/split.out'))['targets']))")
svd_sum=$(python3 -c "import json;print('%.1f'%sum(t['seconds'] for t in json.load(open('$dir/split.out'))['targets']))")
cores=$(nproc)
printf '\n| %s | %s |\n|---|---|\n' "whole model (${layers} layers, ${ntargets} matrices, r = ${rank}, F16, $((size / 1024 / 1024)) MiB, ${cores} cores)" "result"
printf '| copy the checkpoint (cp -r, then sync; %s) | %.1f s (CPU: user %.1f s, system %.1f s) |\n' "$cache_note" "$copy_s" "$copy_user" "$copy_sys"
printf '| split: wall time | %.1f s (CPU: user %.1f s, system %.1f s) |\n' "$split_s" "$split_user" "$split_sys"
printf '| split: sum of per-matrix decode+SVD+residual times (one worker each) | %s s, i.e. %.1f s on %d cores |\n' "$svd_sum" "$(python3 -c "print($svd_sum/$cores)")" "$cores"
printf '| split: wall / (per-matrix sum / cores + copy) | %.2f |\n' "$(python3 -c "print($split_s/($svd_sum/$cores+$copy_s))")"
printf '| split: peak resident memory | %.2f GiB |\n' "$(python3 -c "print($split_rss/1024/1024)")"
printf '| merge: wall time (vs copy, %s) | %.1f s (%.2f×; CPU: user %.1f s, system %.1f s) |\n' "$cache_note" "$merge_s" "$(python3 -c "print($merge_s/$copy_s)")" "$merge_user" "$merge_sys"
printf '| merge: peak resident memory | %.2f GiB |\n' "$(python3 -c "print($merge_rss/1024/1024)")"
printf '| verify: wall time, peak memory | %.1f s, %.2f GiB |\n' "$verify_s" "$(python3 -c "print($verify_rss/1024/1024)")"
python3 -c "import json;r=json.load(open('$dir/verify.out'));print('| verify | ok=%s, max ‖AAᵀ−I‖ %.1e, max ‖BᵀB−I‖ %.1e |'%(r['ok'],max(t['orth_a'] for t in r['targets']),max(t['orth_b'] for t in r['targets'])))"
pairs "${PAIRS:-0}"
