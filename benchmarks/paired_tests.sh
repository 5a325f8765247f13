#!/usr/bin/env bash
# Paired tests (`nasrec compare`: per-user test NDCG@10, full ranking, bootstrap interval and sign-flip p over
# the 6,040 ML-1M test users) between the strategies of benchmarks/cpu_runs.sh at 1/3 of the max FLOPs.
# Each group is the per-user mean over its seeds; the phases named below must have run into OUT_DIR (the
# session-15 rows, recnas10band and proxyless-softmax, count whichever seeds have finished).
# The same for Amazon Beauty (phases beauty10*, budget 1/3 of the max FLOPs of sasrec-gowalla, 22,363 test users).
# budget2e8: the same at the 2e8-equivalent budget (phases budget2e8-10-seedN and budget2e8-proxyless20-seedN,
# session 24), EASRec against each other strategy over the seeds that finished for both.
#   bash benchmarks/paired_tests.sh OUT_DIR [ml1m|beauty|proxyless|budget2e8|all]   (writes OUT_DIR/paired/NAME.json,
#                                   prints a markdown table; default all; proxyless: only the ProxylessNAS rows of
#                                   sessions 17-19)
set -uo pipefail
cd "$(dirname "$0")/.."
out=$1 part=${2:-all}
case $part in ml1m|beauty|proxyless|budget2e8|all) ;;
  *) echo "part must be ml1m, beauty, proxyless, budget2e8 or all, got $part" >&2; exit 2 ;; esac
py=${PYTHON:-.venv/bin/python}
mkdir -p "$out/paired"
finished() { local r; for r in "$@"; do [ -f "$r/result.json" ] && printf '%s\0' "$r"; done; }
# DARTS seeds 0 and 1 are the session-11 searches re-projected with session 13's guarantee; seeds 2+ searched with it
mapfile -d '' darts < <(finished "$out"/reproject-others10-seed{0,1}/darts_weight_step_sandwich__1.95e_07 \
    "$out"/darts10-seed{2..9}/darts_weight_step_sandwich__1.95e_07)
easrec4=("$out"/softmax10-seed{0,1,2,3}/easrec_attention_softmax__1.95e_07)
easrec7=("${easrec4[@]}" "$out"/reproject-softmax10-seed4/easrec_attention_softmax__1.95e_07
         "$out"/softmax10-seed{5,6}/easrec_attention_softmax__1.95e_07)
mapfile -d '' hinge < <(finished "$out"/softmax10-hinge-seed*/easrec_attention_softmax_penalty_hinge__1.95e_07)
mapfile -d '' sandwich_hinge < <(finished \
    "$out"/softmax10-sandwich-hinge-seed*/easrec_attention_softmax_penalty_hinge_weight_step_sandwich__1.95e_07)
recnas=("$out"/recnas10-seed{0,1,2,3,4,5}/recnas_weight_step_sandwich_budget_rule_greedy_budget_temperature_100__1.95e_07)
mapfile -d '' max < <(finished "$out"/max-seed{0..9}/max_arch)  # seed 0: phase max-seed0 (base's run repeated)

baselines() { local flag=() r; for r in "$@"; do flag+=(--baseline "$r"); done; printf '%s\0' "${flag[@]}"; }
compare() {  # NAME, then the runs, then -- and the baselines
    local name=$1 runs=() base=(); shift
    while [ "$1" != -- ]; do runs+=("$1"); shift; done; shift
    mapfile -d '' base < <(baselines "$@")
    "$py" -m nasrec compare "${runs[@]}" "${base[@]}" --json > "$out/paired/$name.json.tmp" || exit 1
    mv "$out/paired/$name.json.tmp" "$out/paired/$name.json"
    "$py" - "$out/paired/$name.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = r["test"]
print(f"| {sys.argv[2]} | {len(r['runs'])} | {t['mean_a']:.4f} | {len(r['baselines'])} | {t['mean_b']:.4f} | "
      f"{r['ratio']:.3f} | {t['difference']:+.4f} [{t['ci_low']:+.4f}, {t['ci_high']:+.4f}] | {t['p_value']:.2g} |")
PY
}
echo "| comparison | runs | mean NDCG@10 | baseline runs | mean NDCG@10 | ratio | difference [95% interval] | p |"
echo "|---|---|---|---|---|---|---|---|"
if [ "$part" = ml1m ] || [ "$part" = all ]; then
compare darts-vs-easrec "${darts[@]:0:4}" -- "${easrec4[@]}"
if [ ${#darts[@]} -gt 4 ]; then  # every DARTS seed against the EASRec runs of the same seeds
    compare darts-vs-easrec-all "${darts[@]}" -- "${easrec7[@]:0:${#darts[@]}}"
fi
compare easrec-vs-max "${easrec7[@]}" -- "${max[@]}"
compare darts-vs-max "${darts[@]}" -- "${max[@]}"
compare recnas-vs-max "${recnas[@]}" -- "${max[@]}"
compare easrec-vs-recnas "${easrec7[@]:0:6}" -- "${recnas[@]}"
compare easrec-vs-proxyless "${easrec7[@]:0:2}" -- "$out"/others10-seed{0,1}/proxyless__1.95e_07
# the EASRec variants of session 14 against DARTS and EASRec on their first seeds (paired by seed count)
for variant in hinge sandwich_hinge; do
    declare -n runs_of=$variant
    n=${#runs_of[@]}
    [ "$n" -gt 0 ] || continue
    compare "easrec-$variant-vs-darts" "${runs_of[@]}" -- "${darts[@]:0:$n}"
    compare "easrec-$variant-vs-easrec" "${runs_of[@]}" -- "${easrec7[@]:0:$n}"
    unset -n runs_of
done
# session 15: RecNAS with its band rule (phase recnas10band), ProxylessNAS on the softmax-only space (proxyless-softmax)
mapfile -d '' recnas_band < <(finished "$out"/recnas10band-seed{0..9}/recnas_weight_step_sandwich__1.95e_07)
mapfile -d '' proxyless_softmax < <(finished "$out"/proxyless-softmax-seed{0..9}/proxyless_resource_form_hinge__1.95e_07)
n=${#recnas_band[@]}
if [ "$n" -gt 0 ]; then  # against the max arch, and against the other strategies' runs of the same seeds
    compare recnas-band-vs-max "${recnas_band[@]}" -- "${max[@]}"
    compare recnas-band-vs-recnas "${recnas_band[@]}" -- "${recnas[@]:0:$n}"
    compare recnas-band-vs-darts "${recnas_band[@]}" -- "${darts[@]:0:$n}"
    compare recnas-band-vs-easrec "${recnas_band[@]}" -- "${easrec7[@]:0:$n}"
fi
n=${#proxyless_softmax[@]}
if [ "$n" -gt 0 ]; then
    compare proxyless-softmax-vs-max "${proxyless_softmax[@]}" -- "${max[@]}"
    compare easrec-vs-proxyless-softmax "${easrec7[@]:0:$n}" -- "${proxyless_softmax[@]}"
fi
fi

if [ "$part" = ml1m ] || [ "$part" = proxyless ] || [ "$part" = all ]; then
# session 17: ProxylessNAS with lam=0 and sandwich weight steps (phases proxyless-ce-sandwich on the softmax-only space,
# proxyless-ce-sandwich-ml1m on sasrec-ml1m), against the max arch and the other strategies' runs of the same seeds
mapfile -d '' px_ce < <(finished "$out"/proxyless-ce-sandwich-seed{0..9}/proxyless_lam_0_weight_step_sandwich__1.95e_07)
mapfile -d '' px_ce_full < <(finished \
    "$out"/proxyless-ce-sandwich-ml1m-seed{0..9}/proxyless_lam_0_weight_step_sandwich__1.95e_07)
mapfile -d '' px_hinge < <(finished "$out"/proxyless-softmax-seed{0..9}/proxyless_resource_form_hinge__1.95e_07)
n=${#px_ce[@]}
if [ "$n" -gt 0 ]; then
    compare proxyless-ce-sandwich-vs-max "${px_ce[@]}" -- "${max[@]}"
    compare proxyless-ce-sandwich-vs-proxyless-softmax "${px_ce[@]}" -- "${px_hinge[@]:0:$n}"
    compare proxyless-ce-sandwich-vs-darts "${px_ce[@]}" -- "${darts[@]:0:$n}"
    compare easrec-vs-proxyless-ce-sandwich "${easrec7[@]:0:$n}" -- "${px_ce[@]}"
fi
# the same arch (L2 h96 i256.192, seeds 0 and 1) trained from scratch (phase ref-l2h96-seedN): what inheriting adds
mapfile -d '' scratch < <(finished "$out"/ref-l2h96-seed{0,1}/L2-h96-i256.192-e96-a4-softmax_arch)
if [ ${#scratch[@]} -eq 2 ] && [ "$n" -ge 2 ]; then
    compare proxyless-ce-sandwich-vs-scratch "${px_ce[@]:0:2}" -- "${scratch[@]}"
fi
if [ ${#px_ce_full[@]} -gt 0 ]; then
    compare proxyless-ce-sandwich-ml1m-vs-max "${px_ce_full[@]}" -- "${max[@]}"
fi
# session 18: the same on sasrec-ml1m with estimator=pair_loss (phase proxyless-pair-ml1m), against the max arch,
# the gate estimator's runs of the same seeds, DARTS and the softmax-only gate runs
mapfile -d '' px_pair < <(finished \
    "$out"/proxyless-pair-ml1m-seed{0..9}/proxyless_lam_0_weight_step_sandwich_estimator_pair_loss__1.95e_07)
n=${#px_pair[@]}
if [ "$n" -gt 0 ]; then
    compare proxyless-pair-ml1m-vs-max "${px_pair[@]}" -- "${max[@]}"
    compare proxyless-pair-ml1m-vs-darts "${px_pair[@]}" -- "${darts[@]:0:$n}"
    compare proxyless-pair-ml1m-vs-ce-sandwich-softmax "${px_pair[@]}" -- "${px_ce[@]:0:$n}"
    if [ ${#px_ce_full[@]} -ge "$n" ]; then
        compare proxyless-pair-ml1m-vs-gate "${px_pair[@]}" -- "${px_ce_full[@]:0:$n}"
    elif [ ${#px_ce_full[@]} -gt 0 ]; then  # the gate runs' seeds only
        compare proxyless-pair-ml1m-vs-gate "${px_pair[@]:0:${#px_ce_full[@]}}" -- "${px_ce_full[@]}"
    fi
fi
# the same with sandwich_attention=weights (phase proxyless-pair-sw-ml1m) against pair_loss alone, same seeds
sw_run=proxyless_lam_0_weight_step_sandwich_estimator_pair_loss_sandwich_attention_weights__1.95e_07
mapfile -d '' px_sw < <(finished "$out"/proxyless-pair-sw-ml1m-seed{0..9}/"$sw_run")
n=${#px_sw[@]}
if [ "$n" -gt 0 ] && [ ${#px_pair[@]} -ge "$n" ]; then
    compare proxyless-pair-sw-ml1m-vs-max "${px_sw[@]}" -- "${max[@]}"
    compare proxyless-pair-sw-ml1m-vs-pair "${px_sw[@]}" -- "${px_pair[@]:0:$n}"
fi
# session 19: pair_loss with 20 search epochs (phase proxyless-pair20-ml1m) against the max arch, 10-epoch pair_loss
# and the softmax-only gate runs of the same seeds
mapfile -d '' px_pair20 < <(finished \
    "$out"/proxyless-pair20-ml1m-seed{0..9}/proxyless_lam_0_weight_step_sandwich_estimator_pair_loss__1.95e_07)
n=${#px_pair20[@]}
if [ "$n" -gt 0 ]; then
    compare proxyless-pair20-ml1m-vs-max "${px_pair20[@]}" -- "${max[@]}"
    [ ${#px_ce[@]} -ge "$n" ] && compare proxyless-pair20-ml1m-vs-ce-sandwich-softmax "${px_pair20[@]}" -- "${px_ce[@]:0:$n}"
    [ ${#darts[@]} -ge "$n" ] && compare proxyless-pair20-ml1m-vs-darts "${px_pair20[@]}" -- "${darts[@]:0:$n}"
    compare easrec-vs-proxyless-pair20-ml1m "${easrec7[@]:0:$n}" -- "${px_pair20[@]}"
    m=$(( n < ${#px_pair[@]} ? n : ${#px_pair[@]} ))  # the 10-epoch runs are the first half of these (same seeds)
    [ "$m" -gt 0 ] && compare proxyless-pair20-ml1m-vs-pair "${px_pair20[@]:0:$m}" -- "${px_pair[@]:0:$m}"
fi
# the same with 15 search epochs (phase proxyless-pair15-ml1m) against the max arch and 20 epochs, same seeds
mapfile -d '' px_pair15 < <(finished \
    "$out"/proxyless-pair15-ml1m-seed{0..9}/proxyless_lam_0_weight_step_sandwich_estimator_pair_loss__1.95e_07)
n=${#px_pair15[@]}
if [ "$n" -gt 0 ]; then
    compare proxyless-pair15-ml1m-vs-max "${px_pair15[@]}" -- "${max[@]}"
    # against 20 epochs only when every 15-epoch seed has its 20-epoch run (seeds 0..n-1)
    [ ${#px_pair20[@]} -ge "$n" ] && compare proxyless-pair15-ml1m-vs-pair20 "${px_pair15[@]}" -- "${px_pair20[@]:0:$n}"
fi
fi

if [ "$part" = beauty ] || [ "$part" = all ]; then  # Amazon Beauty, seeds 0 and 1 of each row (and seed 2 of three rows)
    b=$out/beauty10 b1s=$out/beauty10-seed1 b1o=$out/beauty10-others-seed1 k=__7.92e_06
    bmax=("$b/max_arch" "$b1o/max_arch")
    bdarts=("$b/darts_weight_step_sandwich$k" "$b1o/darts_weight_step_sandwich$k")
    brecnas=("$b/recnas_weight_step_sandwich_budget_rule_greedy_budget_temperature_100$k"
             "$b1s/recnas_weight_step_sandwich_budget_rule_greedy_budget_temperature_100$k")
    bhinge=("$out/beauty10-easrec/easrec_attention_softmax_penalty_hinge$k" "$b1s/easrec_attention_softmax_penalty_hinge$k")
    beasrec=("$b/easrec_attention_softmax$k" "$out/beauty10-easrec-seed1/easrec_attention_softmax$k")
    brandom=("$b/random$k" "$b1o/random$k")
    compare beauty-darts-vs-max "${bdarts[@]}" -- "${bmax[@]}"
    compare beauty-darts-vs-recnas "${bdarts[@]}" -- "${brecnas[@]}"
    compare beauty-darts-vs-easrec-hinge "${bdarts[@]}" -- "${bhinge[@]}"
    compare beauty-easrec-hinge-vs-easrec "${bhinge[@]}" -- "${beasrec[@]}"
    compare beauty-easrec-vs-random "${beasrec[@]}" -- "${brandom[@]}"
    # session 15: RecNAS with the band rule (phase beauty10band), seeds 0 and 1 when both have finished
    mapfile -d '' brecnas_band < <(finished "$out"/beauty10band-seed{0,1}/recnas_weight_step_sandwich$k)
    if [ ${#brecnas_band[@]} -eq 2 ]; then
        compare beauty-recnas-band-vs-max "${brecnas_band[@]}" -- "${bmax[@]}"
        compare beauty-recnas-band-vs-recnas "${brecnas_band[@]}" -- "${brecnas[@]}"
        compare beauty-recnas-band-vs-darts "${brecnas_band[@]}" -- "${bdarts[@]}"
    fi
    # session 16: seed 2 of the max arch, DARTS (phase beauty10-others-seed2) and RecNAS's band rule, when all three
    # have finished: three seeds each
    b2o=$out/beauty10-others-seed2
    mapfile -d '' seed2 < <(finished "$b2o/max_arch" "$b2o/darts_weight_step_sandwich$k" \
        "$out/beauty10band-seed2/recnas_weight_step_sandwich$k")
    if [ ${#seed2[@]} -eq 3 ] && [ ${#brecnas_band[@]} -eq 2 ]; then
        bmax3=("${bmax[@]}" "${seed2[0]}") bdarts3=("${bdarts[@]}" "${seed2[1]}") brecnas3=("${brecnas_band[@]}" "${seed2[2]}")
        compare beauty3-recnas-band-vs-max "${brecnas3[@]}" -- "${bmax3[@]}"
        compare beauty3-darts-vs-max "${bdarts3[@]}" -- "${bmax3[@]}"
        compare beauty3-recnas-band-vs-darts "${brecnas3[@]}" -- "${bdarts3[@]}"
    fi
fi
if [ "$part" = budget2e8 ] || [ "$part" = all ]; then
    k=__3.99e_07
    for other in darts_weight_step_sandwich recnas_weight_step_sandwich \
                 proxyless_lam_0_weight_step_sandwich_estimator_pair_loss; do
        phase=budget2e8-10; [[ $other == proxyless* ]] && phase=budget2e8-proxyless20
        pairs_e=() pairs_o=()
        for n in 0 1 2 3 4 5 6 7 8 9; do  # a seed counts when both its runs have finished
            e=$out/budget2e8-10-seed$n/easrec_attention_softmax$k o=$out/$phase-seed$n/$other$k
            if [ -f "$e/result.json" ] && [ -f "$o/result.json" ]; then pairs_e+=("$e") pairs_o+=("$o"); fi
        done
        [ ${#pairs_e[@]} -gt 0 ] && compare "budget2e8-easrec-vs-${other%%_*}" "${pairs_e[@]}" -- "${pairs_o[@]}"
    done
fi
