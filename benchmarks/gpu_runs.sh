#!/usr/bin/env bash
# The GPU rows of docs/benchmarks.md: several benchmark jobs at once on one CUDA device, each a process with
# one CPU thread (the GPU is shared; wall times of concurrent jobs are not those of a job alone).
#   bash benchmarks/gpu_runs.sh PHASE OUT_DIR [DEADLINE_SECONDS]
# PHASE: ml1m-L200 (issue-2 SASRec, strategies and EASRec ablations on ML-1M at max_len 200, budget 1/3 of max) or
#        more (issue-2 SASRec again, EASRec with lam 0.01, ML-1M at budget 2e8, Amazon Beauty with sasrec-gowalla) or
#        last (issue-2 SASRec selected and tested with history excluded, EASRec with softmax attention, Beauty's rest) or
#        next (EASRec with the hinge penalty; 15-epoch searches against the depth-1 preference of 5-epoch supernets;
#        Beauty's rest) or
#        sandwich (DARTS, RecNAS, EASRec with weight_step=sandwich on ML-1M at max_len 200; Beauty's DARTS, RecNAS,
#        EASRec beside its max arch) or beauty (Beauty's DARTS, RecNAS, EASRec alone) or
#        ablation (the EASRec ablations again, after the gate fix of session 6) or ablation-seed1 (the same, seed 1) or
#        leaders (session 16: the CPU protocol's leading settings of sessions 10-15 at max_len 200, seeds 0 and 1, 10
#        search epochs: EASRec with softmax and with linear attention, DARTS and RecNAS (band rule) with sandwich
#        steps, ProxylessNAS with the hinge on sasrec-ml1m without linear attention, random (seed 0), the max arch) or
#        leaders-seeds23 (the same rows with seeds 2 and 3, without random and the linear max arch) or
#        leaders-seeds45 (seeds 4 and 5 of the max arch, EASRec with softmax attention, DARTS and RecNAS) or
#        leaders-summary (no GPU: the leaders* runs of OUT_DIR by seed, benchmarks/seed_summary.py).
# PYTHON (default .venv/bin/python), DATA_DIR (default ../shared/data) and THREADS (CPU threads per job, default 1)
# may be set. Finished runs are kept
# and reused on a rerun (search_compare.py); jobs still running at the deadline are stopped.
set -uo pipefail
cd "$(dirname "$0")/.."
phase=$1 out=$2 deadline=${3:-3000}
py=${PYTHON:-.venv/bin/python}
data=${DATA_DIR:-../shared/data}
if [ "$phase" = leaders-summary ]; then
    d=$out/ml1m-L200-leaders b=9.74e_07
    exec "$py" benchmarks/seed_summary.py --reference "max=$d-seed*/max_arch" \
      --group "easrec-softmax=$d-seed*/easrec_attention_softmax__$b" --group "easrec-linear=$d-seed*/easrec__$b" \
      --group "darts=$d-seed*/darts_weight_step_sandwich__$b" --group "recnas=$d-seed*/recnas_weight_step_sandwich__$b" \
      --group "proxyless-softmax-space=$d-proxyless-seed*/proxyless_resource_form_hinge__$b" \
      --group "random=$d-seed*/random__$b" --group "max-linear=$d-seed*/max-linear_arch" \
      --compare easrec-softmax:max --compare darts:max --compare recnas:max --compare proxyless-softmax-space:max \
      --compare easrec-softmax:darts --compare easrec-softmax:recnas --compare easrec-softmax:proxyless-softmax-space \
      --compare darts:recnas --compare darts:proxyless-softmax-space --compare easrec-linear:easrec-softmax \
      --json "$out/leaders-summary.json"
fi
mkdir -p "$out/logs"
common=(--device cuda --threads "${THREADS:-1}" --search-epochs 5 --retrain-epochs 30 --patience 5)
ml1m=(--data "$data/ml-1m/ml-1m_sasrec5.txt" --space sasrec-ml1m)
beauty=(--data "$data/amazon-beauty/Beauty.txt" --space sasrec-gowalla)
jobs=()  # one shell command per line
tables=()  # per comparison: the command that rebuilds its table from its finished runs
add_compare() {  # add_compare DIR [search_compare options...]: one job per run of that comparison
    local dir=$1; shift
    local base=("$py" benchmarks/search_compare.py "${common[@]}" "$@" --out "$out/$dir")
    while IFS= read -r name; do
        jobs+=("$(printf '%q ' "${base[@]}" --only "$name")")
    done < <("${base[@]}" --list)
    tables+=("$(printf '%q ' "${base[@]}" --table-only)")
}
case $phase in
  ml1m-L200)
    jobs+=("$(printf '%q ' env NASREC="$py -m nasrec" DATA_DIR="$data" bash benchmarks/ml1m_sasrec.sh \
           "$out/ml1m-sasrec-d64" --device cuda --threads 1)")
    add_compare ml1m-L200 "${ml1m[@]}" --max-len 200 --budget 0.333x --references max,max-linear \
      --strategy darts --strategy proxyless --strategy recnas --strategy random --strategy easrec \
      --strategy easrec:gates=one --strategy easrec:gates=none --strategy easrec:constraint=static ;;
  more)
    jobs+=("$(printf '%q ' env NASREC="$py -m nasrec" DATA_DIR="$data" bash benchmarks/ml1m_sasrec.sh \
           "$out/ml1m-sasrec-d64" --device cuda --threads 1)")
    add_compare ml1m-L200-lam "${ml1m[@]}" --max-len 200 --budget 0.333x --references "" --strategy easrec:lam=0.01
    add_compare ml1m-L200-2e8 "${ml1m[@]}" --max-len 200 --budget 2e8 --references "" \
      --strategy darts --strategy proxyless --strategy recnas --strategy random --strategy easrec
    add_compare beauty "${beauty[@]}" --max-len 50 --budget 0.333x --references max,max-linear \
      --strategy darts --strategy proxyless --strategy recnas --strategy random --strategy easrec ;;
  last)
    jobs+=("$(printf '%q ' env NASREC="$py -m nasrec" DATA_DIR="$data" bash benchmarks/ml1m_sasrec.sh \
           "$out/ml1m-sasrec-d64-exclude" --device cuda --threads 1 --exclude-history)")
    add_compare ml1m-L200-softmax "${ml1m[@]}" --max-len 200 --budget 0.333x --references "" \
      --strategy easrec:attention=softmax
    add_compare beauty "${beauty[@]}" --max-len 50 --budget 0.333x --references max,max-linear \
      --strategy darts --strategy proxyless --strategy recnas --strategy random --strategy easrec ;;
  next)
    add_compare ml1m-L200-hinge "${ml1m[@]}" --max-len 200 --budget 0.333x --references "" \
      --strategy easrec:penalty=hinge --strategy easrec:penalty=hinge,lam=1.0 \
      --strategy easrec:penalty=hinge,attention=softmax
    add_compare ml1m-L200-long "${ml1m[@]}" --max-len 200 --budget 0.333x --references "" --search-epochs 15 \
      --strategy recnas --strategy darts --strategy easrec --strategy easrec:penalty=hinge
    add_compare beauty "${beauty[@]}" --max-len 50 --budget 0.333x --references max,max-linear \
      --strategy darts --strategy proxyless --strategy recnas --strategy random --strategy easrec ;;
  beauty)
    add_compare beauty "${beauty[@]}" --max-len 50 --budget 0.333x --references "" \
      --strategy darts --strategy recnas --strategy easrec ;;
  ablation)
    add_compare ml1m-L200-ablation "${ml1m[@]}" --max-len 200 --budget 0.333x --references "" \
      --strategy easrec --strategy easrec:gates=one --strategy easrec:gates=none --strategy easrec:constraint=static ;;
  ablation-seed1)
    add_compare ml1m-L200-ablation-seed1 "${ml1m[@]}" --max-len 200 --budget 0.333x --references "" --seed 1 \
      --strategy easrec --strategy easrec:gates=one --strategy easrec:gates=none --strategy easrec:constraint=static ;;
  sandwich)
    add_compare ml1m-L200-sandwich "${ml1m[@]}" --max-len 200 --budget 0.333x --references max \
      --strategy darts:weight_step=sandwich --strategy recnas:weight_step=sandwich \
      --strategy easrec:weight_step=sandwich
    add_compare beauty "${beauty[@]}" --max-len 50 --budget 0.333x --references max \
      --strategy darts --strategy recnas --strategy easrec ;;
  leaders-seeds45)
    for seed in 4 5; do
      add_compare "ml1m-L200-leaders-seed$seed" "${ml1m[@]}" --max-len 200 --budget 0.333x --search-epochs 10 \
        --seed "$seed" --references max --strategy easrec:attention=softmax \
        --strategy darts:weight_step=sandwich --strategy recnas:weight_step=sandwich
    done ;;
  leaders|leaders-seeds23)
    seeds=(0 1); [ "$phase" = leaders-seeds23 ] && seeds=(2 3)
    for seed in "${seeds[@]}"; do
      refs=max extra=()
      [ "$seed" = 0 ] && refs=max,max-linear extra=(--strategy random)
      add_compare "ml1m-L200-leaders-seed$seed" "${ml1m[@]}" --max-len 200 --budget 0.333x --search-epochs 10 \
        --seed "$seed" --references "$refs" --strategy easrec:attention=softmax --strategy easrec \
        --strategy darts:weight_step=sandwich --strategy recnas:weight_step=sandwich "${extra[@]}"
      add_compare "ml1m-L200-leaders-proxyless-seed$seed" --data "$data/ml-1m/ml-1m_sasrec5.txt" \
        --space benchmarks/spaces/sasrec-ml1m-softmax.yaml --max-len 200 --budget 0.333x --search-epochs 10 \
        --seed "$seed" --references "" --strategy proxyless:resource_form=hinge
    done ;;
  *) echo "unknown phase $phase" >&2; exit 2 ;;
esac
[ ${#jobs[@]} -gt 0 ] || { echo "$phase: no jobs (see the errors above)" >&2; exit 2; }
printf '%s\n' "${jobs[@]}" > "$out/logs/$phase.jobs"
echo "$phase: ${#jobs[@]} jobs, deadline ${deadline}s"
i=0
for cmd in "${jobs[@]}"; do
    i=$((i + 1))
    ( timeout "$deadline" bash -c "$cmd" > "$out/logs/$phase-$i.log" 2>&1; echo "job $i exit $?: $cmd" ) &
done
wait
for cmd in "${tables[@]}"; do
    bash -c "$cmd" | tail -n +2
done
