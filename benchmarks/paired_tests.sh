#!/usr/bin/env bash
# Paired tests (`nasrec compare`: per-user test NDCG@10, full ranking, bootstrap interval and sign-flip p over
# the 6,040 ML-1M test users) between the strategies of benchmarks/cpu_runs.sh at 1/3 of the max FLOPs.
# Each group is the per-user mean over its seeds; the phases named below must have run into OUT_DIR.
#   bash benchmarks/paired_tests.sh OUT_DIR        (writes OUT_DIR/paired/NAME.json and prints one line each)
set -uo pipefail
cd "$(dirname "$0")/.."
out=$1
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out/paired"
darts=("$out"/reproject-others10-seed{0,1}/darts_weight_step_sandwich__1.95e_07 "$out"/darts10-seed{2,3}/darts_weight_step_sandwich__1.95e_07)
easrec4=("$out"/softmax10-seed{0,1,2,3}/easrec_attention_softmax__1.95e_07)
easrec7=("${easrec4[@]}" "$out"/reproject-softmax10-seed4/easrec_attention_softmax__1.95e_07
         "$out"/softmax10-seed{5,6}/easrec_attention_softmax__1.95e_07)
hinge=()  # the finished seeds of phase softmax10-hinge-seedN
for r in "$out"/softmax10-hinge-seed*/easrec_attention_softmax_penalty_hinge__1.95e_07; do
    [ -f "$r/result.json" ] && hinge+=("$r")
done
recnas=("$out"/recnas10-seed{0,1,2,3,4,5}/recnas_weight_step_sandwich__1.95e_07)
max=("$out"/max-seed{1,2}/max_arch)  # seed 0 (phase base) predates this output directory

baselines() { local flag=() r; for r in "$@"; do flag+=(--baseline "$r"); done; printf '%s\0' "${flag[@]}"; }
compare() {  # NAME, then the runs, then -- and the baselines
    local name=$1 runs=() base=(); shift
    while [ "$1" != -- ]; do runs+=("$1"); shift; done; shift
    mapfile -d '' base < <(baselines "$@")
    "$py" -m nasrec compare "${runs[@]}" "${base[@]}" --json > "$out/paired/$name.json" || return 1
    "$py" - "$out/paired/$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = r["test"]
print(f"{sys.argv[2]}: {len(r['runs'])} vs {len(r['baselines'])} runs, {t['mean_a']:.4f} vs {t['mean_b']:.4f} "
      f"(ratio {r['ratio']:.3f}), difference {t['difference']:+.4f} [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}], "
      f"p = {t['p_value']:.3g}")
PY
}
compare darts-vs-easrec "${darts[@]}" -- "${easrec4[@]}"
compare easrec-vs-max "${easrec7[@]}" -- "${max[@]}"
compare darts-vs-max "${darts[@]}" -- "${max[@]}"
compare recnas-vs-max "${recnas[@]}" -- "${max[@]}"
compare easrec-vs-recnas "${easrec7[@]:0:6}" -- "${recnas[@]}"
if [ ${#hinge[@]} -gt 0 ]; then
    n=${#hinge[@]}
    compare easrec-hinge-vs-darts "${hinge[@]}" -- "${darts[@]:0:$n}"
    compare easrec-hinge-vs-easrec "${hinge[@]}" -- "${easrec7[@]:0:$n}"
fi
