#!/usr/bin/env bash
# Strategies side by side on this 2-core CPU: ML-1M at max_len 50 with one training window per user (the
# last 50 items), a reduced protocol that fits a session without a GPU. Jobs run two at a time, one process
# and one torch thread each (search_compare.py --only NAME); a finished run is reused and an interrupted one
# resumed when the script is rerun, so a phase may span several sessions.
#   bash benchmarks/cpu_runs.sh PHASE OUT_DIR
# PHASE: base   (max arch; recnas, darts, easrec, easrec with the hinge penalty at 1/3 of max)
#        lr     (arch learning rate 0.03 instead of 3e-3: the arch weights barely leave uniform in 5 epochs)
#        long   (15 search epochs instead of 5)
#        refs   (archs within 1/3 of max trained from scratch: deep-narrow L4 h64 i192 against shallow-wide
#                L1 h128 i256, the one-block arch every strategy derived in phase base, and L2 h96 i192,
#                L3 h64 i256 between them)
#        sandwich (weight_step=sandwich: the supernet trains the largest path and one uniformly drawn path on
#                their own losses instead of the mixture; easrec, darts, recnas)
#        sandwich-warm (easrec with weight_step=sandwich and 10 weight-only warm-up epochs of 15: a longer-trained
#                supernet before the controllers decide; tau_initial 9.31 = 1 / 0.8^10 gives the 5 controller
#                epochs the temperatures of the default schedule, 1.0 down to 0.41)
#        seed1  (seed 1: recnas with weight_step=sandwich - is phase sandwich's recnas row more than noise? - and
#                recnas with the mixture and darts with sandwich, for paired comparisons)
#        softmax (easrec with softmax attention, with the mixture and with sandwich steps: deep linear-attention
#                archs train slowly from scratch here, so is linear attention what keeps EASRec at one block?)
#        softmax-seedN, N = 1..9 (easrec with softmax attention, seed N; run two at once with SLOTS=1)
#        softmax10-seedN, N = 0..9 (the same with the paper's 10 search epochs: in the 5-epoch traces the depth-2
#                weight was still rising, and seeds 1 and 2 ended on a depth 1/2 tie)
#        linear10-seedN, N = 0..9 (easrec with its default linear attention and 10 search epochs, seed N)
#        others10-seedN, N = 0..9 (recnas and darts with weight_step=sandwich - their best 5-epoch rows - and
#                proxyless, each with 10 search epochs and seed N: the other strategies at EASRec's search length;
#                run two at once with SLOTS=1)
#        recnas10-seedN, N = 0..9 (recnas with weight_step=sandwich, 10 search epochs, seed N, after the change of
#                its hard-budget rule in session 11: a move that alone brings the argmax within budget and loses the
#                least weight wins; the others10 recnas rows ran the ratio rule alone; budget_rule=greedy and
#                budget_temperature=100 (every pruning round prunes to the budget) keep that rule since session 15)
#        recnas10band-seedN, N = 0..9 (the same with session 15's defaults: hard-budget pruning only from the rounds at
#                temperature <= 1, toward the most preferred surviving arch costing 0.8x to 1x the budget)
#        recnas10defer-seedN, N = 0..9 (recnas10band with budget_defer=0.3 (session 16): a choice whose weights are flat
#                at a budget round before the last is left whole that round; seed 3 of recnas10band pruned depths 4, 3
#                and 1 at once on depth weights 0.21-0.31; the other seeds' first rounds pruned no choice that flat)
#        max-seedN, N = 0..9 (the max arch, softmax, with seed N: the reference's own seed-to-seed spread, beside
#                the searched archs' seeds; run two at once with SLOTS=1; seed 0 repeats phase base's run, for its model)
#        baselines (proxyless and random with their defaults: issue 3's other two rows on this protocol)
#        slices (benchmarks/slice_ranking.py on the supernets of phases base, sandwich (darts, easrec) and sandwich-warm: how each
#                ranks archs of ~1/3 of the FLOPs, run as its own slice on arch-validation rows; needs those phases)
#        budget2e8 (the issue-4 budget of 2e8 FLOPs as its share of the max arch at max_len 200, 2e8 / 2.925e8 =
#                0.6837x, here 3.99e7: easrec (linear and softmax attention), darts, recnas, proxyless, random)
#        budget2e8-10-seedN, N = 0..9 (the 2e8-equivalent budget, 0.6837x, with the settings that lead at 1/3 of max
#                since sessions 10-15: 10 search epochs, easrec with softmax attention, darts and recnas with
#                weight_step=sandwich (recnas with session 15's band rule), seed N; phase budget2e8 is session 8's)
#        budget2e8-hinge-seedN, N = 0..9 (the same budget, easrec with softmax attention and the hinge penalty, which
#                charges only FLOPs above the budget: with the default penalty EASRec's archs spent half this budget)
#        budget2e8-proxyless20-seedN, N = 0..9 (the same budget, proxyless as it leads at 1/3 since session 19:
#                lam=0, sandwich weight steps, the pair-loss estimator, 20 search epochs; seed N)
#        random-min-epochs (random as in phase baselines, its retrain with --min-epochs 15, so that patience cannot
#                end it on the popularity plateau)
#        plateau (the deep linear arch random picked in phase baselines, L4 h64 i128.192.256.192, trained from scratch
#                with --min-epochs 15: its retrain there ended on patience at epoch 8, still at the popularity level)
#        max-linear (the max arch with linear attention, from scratch: the issue-4 reference beside the softmax one)
#        beauty (Amazon Beauty, space sasrec-gowalla, the GPU rows' protocol: all windows, 30 retrain epochs;
#                darts, recnas, easrec - the rows the GPU sessions did not finish)
#        beauty10 (Amazon Beauty as in phase beauty, seed 0, every strategy with 10 search epochs and the settings
#                that led on ML-1M: the max arch, easrec with softmax attention, recnas and darts with
#                weight_step=sandwich, random, proxyless; on the H100 with 5 epochs EASRec (linear) was last)
#        beauty10-easrec (needs beauty10's layout: easrec with softmax attention and sandwich weight steps, and with
#                the hinge penalty: in beauty10 EASRec settled on hidden 32 at 0.16x of the max FLOPs, half the budget
#                unused - is that the shared supernet's bias to narrow slices, or the penalty's pull?)
#        beauty10-easrec-seedN, N = 1..9 (beauty10's easrec row with seed N; run two at once with SLOTS=1)
#        beauty10-seedN, N = 1..9 (seed N of the two rows that used the budget: recnas with sandwich steps, easrec with
#                softmax attention and the hinge penalty)
#        beauty10band-seedN, N = 0..9 (beauty10's recnas row with session 15's defaults - the band rule from temperature 1 -
#                and seed N; phases beauty10 and beauty10-seedN ran the greedy rule in every round)
#        beauty10-others-seedN, N = 1..9 (seed N of beauty10's other rows: the max arch, darts with sandwich steps,
#                random, proxyless - is DARTS's 0.997x at seed 0 more than one seed's luck, and the max arch's 0.0420?)
#        darts10-seedN, N = 0..9 (darts with weight_step=sandwich, 10 search epochs, seed N, with the budget guarantee of
#                session 13: the others10 darts rows re-projected (reproject-others10-seedN) scored ~1.0x, more seeds)
#        softmax10-hinge-seedN, N = 0..9 (easrec with softmax attention and penalty=hinge, 10 search epochs, seed N: the
#                linear penalty keeps EASRec at two blocks (0.289x) while DARTS, unconstrained and projected by session
#                13's guarantee, takes four blocks of hidden 64 and scores higher - does EASRec without the pull do so too?)
#        softmax10-sandwich-hinge-seedN, N = 0..9 (the same with weight_step=sandwich too: DARTS's sandwich steps train
#                the deep paths that EASRec's Gumbel-weighted mixture steps leave behind)
#        softmax10-sandwich-noconstraint-seedN, N = 0..9 (easrec with softmax attention, weight_step=sandwich and
#                constraint=none: with either penalty the controllers kept two blocks; DARTS has no resource term and
#                leaves the budget to the pipeline's guarantee)
#        proxyless-hinge-seedN, N = 0..9 (proxyless with resource_form=hinge, 10 search epochs, seed N: with the additive
#                term it ended on one narrow block at 0.37x the budget with seeds 0 and 1 (others10))
#        proxyless-softmax-seedN, N = 0..9 (proxyless with resource_form=hinge on benchmarks/spaces/sasrec-ml1m-softmax.yaml,
#                sasrec-ml1m without linear attention: ProxylessNAS's sampled paths drift to linear attention, whose
#                archs train slowly here; EASRec's leading rows fix the kind with attention=softmax. Same max arch, so
#                the same budget)
#        proxyless-ce-seedN, N = 0..9 (proxyless on the softmax-only space with lam=0: arch steps on cross-entropy
#                alone, the budget left to the pipeline's guarantee; with the hinge its weights stayed near uniform and
#                the resource term decided the argmax)
#        proxyless-ce-sandwich-seedN, N = 0..9 (the same with weight_step=sandwich: every block and width trained alone)
#        proxyless-ce-sandwich-ml1m-seedN, N = 0..9 (the same on sasrec-ml1m itself, linear attention included)
#        proxyless-pair-ml1m-seedN, N = 0..9 (the same with estimator=pair_loss: each pair's paths run alone on the same
#                arch-valid batch and their losses replace dL/dg; the gate gradient favoured linear attention)
#        proxyless-pair-sw-ml1m-seedN, N = 0..9 (the same with sandwich_attention=weights: the sandwich paths' attention
#                kind drawn from the arch weights, not uniformly)
#        proxyless-pair20-ml1m-seedN, N = 0..9 (proxyless-pair-ml1m with 20 search epochs: with two attention kinds
#                drawn uniformly, the softmax slices get as many sandwich steps as in 10 epochs on the softmax-only space;
#                proxyless-pairE-ml1m-seedN, E = 15..19: the same with E search epochs)
#        ref-l2h96-seedN, N = 0..9 (L2 h96 i256.192 softmax, the arch every proxyless-ce-sandwich search was projected
#                to, trained from scratch: what the inherited weights add)
#        proxyless-sandwich-hinge-seedN, N = 0..9 (the same with weight_step=sandwich: its sampled paths trained linear
#                attention ahead of softmax and its argmax kept linear attention; sandwich steps train every path alone)
#        reproject-PHASE (PHASE's runs with the budget guarantee of session 13 (PROJECTION_FILL in nasrec/budget.py):
#                each finished search of OUT/PHASE for which it takes another arch (benchmarks/reproject.py) gets its
#                search stage (config.json, search.json, supernet.pt) copied to OUT/reproject-PHASE, to be projected
#                and retrained again; the other runs are copied whole)
# PYTHON (default .venv/bin/python), DATA_DIR (default ../shared/data) and SLOTS (default 2) may be set; ONLY=TEXT
# runs only the phase's runs whose name contains TEXT (e.g. ONLY=recnas: one row of a phase, to rerun or add a seed).
set -uo pipefail
cd "$(dirname "$0")/.."
phase=$1 out=$2
py=${PYTHON:-.venv/bin/python}
data=${DATA_DIR:-../shared/data}
slots=${SLOTS:-2}
# RecNAS as sessions 11-14 ran it (phases recnas10-seedN, beauty10, beauty10-seedN): the greedy hard-budget rule
# in every pruning round; session 15 changed the defaults (phase recnas10band-seedN)
recnas11=recnas:weight_step=sandwich,budget_rule=greedy,budget_temperature=100
common=(--data "$data/ml-1m/ml-1m_sasrec5.txt" --space sasrec-ml1m --max-len 50 --budget 0.333x --last-window-only
        --retrain-epochs 50 --patience 5 --threads 1)
# Amazon Beauty (the beauty* phases): the GPU rows' protocol, all windows, 30 retrain epochs
beauty=(--data "$data/amazon-beauty/Beauty.txt" --space sasrec-gowalla --max-len 50 --budget 0.333x
        --retrain-epochs 30 --patience 5 --threads 1)
source_dir=""
if [[ $phase == reproject-* ]]; then
    source_dir="$out/${phase#reproject-}" dest_phase=$phase phase=${phase#reproject-}
    [ -d "$source_dir" ] || { echo "reproject: $source_dir does not exist (run phase ${phase} first)" >&2; exit 2; }
fi
case $phase in
  beauty)
    common=("${beauty[@]}")
    args=(--search-epochs 5 --references "" --strategy darts --strategy recnas --strategy easrec) ;;
  beauty10)
    common=("${beauty[@]}")
    args=(--search-epochs 10 --references max --strategy easrec:attention=softmax
          --strategy "$recnas11" --strategy random --strategy darts:weight_step=sandwich
          --strategy proxyless) ;;
  beauty10-easrec)
    common=("${beauty[@]}")
    args=(--search-epochs 10 --references "" --strategy easrec:attention=softmax,weight_step=sandwich
          --strategy easrec:attention=softmax,penalty=hinge) ;;
  beauty10-easrec-seed[1-9])
    common=("${beauty[@]}")
    args=(--search-epochs 10 --seed "${phase#beauty10-easrec-seed}" --references "" --strategy easrec:attention=softmax) ;;
  beauty10-seed[1-9])
    common=("${beauty[@]}")
    args=(--search-epochs 10 --seed "${phase#beauty10-seed}" --references "" --strategy "$recnas11"
          --strategy easrec:attention=softmax,penalty=hinge) ;;
  beauty10band-seed[0-9])
    common=("${beauty[@]}")
    args=(--search-epochs 10 --seed "${phase#beauty10band-seed}" --references "" --strategy recnas:weight_step=sandwich) ;;
  beauty10-others-seed[1-9])
    common=("${beauty[@]}")
    args=(--search-epochs 10 --seed "${phase#beauty10-others-seed}" --references max
          --strategy darts:weight_step=sandwich --strategy random --strategy proxyless) ;;
  base) args=(--search-epochs 5 --references max --strategy easrec:penalty=hinge --strategy recnas
              --strategy easrec --strategy darts) ;;
  lr)   args=(--search-epochs 5 --references "" --strategy darts:arch_lr=0.03 --strategy recnas:arch_lr=0.03
              --strategy easrec:penalty=hinge,arch_lr=0.03) ;;
  refs) args=(--search-epochs 5 --references "" --strategy ""
              --arch '{"depth":4,"hidden":64,"inner":192,"embedding":64,"heads":4,"attention":"softmax"}'
              --arch '{"depth":1,"hidden":128,"inner":256,"embedding":128,"heads":4,"attention":"softmax"}'
              --arch '{"depth":2,"hidden":96,"inner":192,"embedding":96,"heads":4,"attention":"softmax"}'
              --arch '{"depth":3,"hidden":64,"inner":256,"embedding":64,"heads":4,"attention":"softmax"}') ;;
  sandwich) args=(--search-epochs 5 --references "" --strategy easrec:weight_step=sandwich
                  --strategy darts:weight_step=sandwich --strategy recnas:weight_step=sandwich) ;;
  sandwich-warm) args=(--search-epochs 15 --references "" --strategy easrec:weight_step=sandwich,warmup_epochs=10,tau_initial=9.31) ;;
  seed1) args=(--search-epochs 5 --seed 1 --references "" --strategy recnas:weight_step=sandwich --strategy recnas
               --strategy darts:weight_step=sandwich) ;;
  softmax) args=(--search-epochs 5 --references "" --strategy easrec:attention=softmax
                 --strategy easrec:attention=softmax,weight_step=sandwich) ;;
  softmax-seed[1-9]) args=(--search-epochs 5 --seed "${phase#softmax-seed}" --references ""
                 --strategy easrec:attention=softmax) ;;
  softmax10-seed[0-9]) args=(--search-epochs 10 --seed "${phase#softmax10-seed}" --references ""
                 --strategy easrec:attention=softmax) ;;
  linear10-seed[0-9]) args=(--search-epochs 10 --seed "${phase#linear10-seed}" --references "" --strategy easrec) ;;
  others10-seed[0-9]) args=(--search-epochs 10 --seed "${phase#others10-seed}" --references ""
                 --strategy recnas:weight_step=sandwich --strategy darts:weight_step=sandwich --strategy proxyless) ;;
  recnas10-seed[0-9]) args=(--search-epochs 10 --seed "${phase#recnas10-seed}" --references ""
                 --strategy "$recnas11") ;;
  recnas10band-seed[0-9]) args=(--search-epochs 10 --seed "${phase#recnas10band-seed}" --references ""
                 --strategy recnas:weight_step=sandwich) ;;
  recnas10defer-seed[0-9]) args=(--search-epochs 10 --seed "${phase#recnas10defer-seed}" --references ""
                 --strategy recnas:weight_step=sandwich,budget_defer=0.3) ;;
  darts10-seed[0-9]) args=(--search-epochs 10 --seed "${phase#darts10-seed}" --references ""
                 --strategy darts:weight_step=sandwich) ;;
  softmax10-hinge-seed[0-9]) args=(--search-epochs 10 --seed "${phase#softmax10-hinge-seed}" --references ""
                 --strategy easrec:attention=softmax,penalty=hinge) ;;
  softmax10-sandwich-hinge-seed[0-9]) args=(--search-epochs 10 --seed "${phase#softmax10-sandwich-hinge-seed}"
                 --references "" --strategy easrec:attention=softmax,penalty=hinge,weight_step=sandwich) ;;
  softmax10-sandwich-noconstraint-seed[0-9]) args=(--search-epochs 10 --references ""
                 --seed "${phase#softmax10-sandwich-noconstraint-seed}"
                 --strategy easrec:attention=softmax,constraint=none,weight_step=sandwich) ;;
  proxyless-hinge-seed[0-9]) args=(--search-epochs 10 --seed "${phase#proxyless-hinge-seed}" --references ""
                 --strategy proxyless:resource_form=hinge) ;;
  proxyless-softmax-seed[0-9]) common=("${common[@]/#sasrec-ml1m/benchmarks/spaces/sasrec-ml1m-softmax.yaml}")
                 args=(--search-epochs 10 --seed "${phase#proxyless-softmax-seed}" --references ""
                       --strategy proxyless:resource_form=hinge) ;;
  proxyless-ce-seed[0-9]) common=("${common[@]/#sasrec-ml1m/benchmarks/spaces/sasrec-ml1m-softmax.yaml}")
                 args=(--search-epochs 10 --seed "${phase#proxyless-ce-seed}" --references ""
                       --strategy proxyless:lam=0) ;;
  proxyless-ce-sandwich-seed[0-9]) common=("${common[@]/#sasrec-ml1m/benchmarks/spaces/sasrec-ml1m-softmax.yaml}")
                 args=(--search-epochs 10 --seed "${phase#proxyless-ce-sandwich-seed}" --references ""
                       --strategy proxyless:lam=0,weight_step=sandwich) ;;
  proxyless-ce-sandwich-ml1m-seed[0-9]) args=(--search-epochs 10 --seed "${phase#proxyless-ce-sandwich-ml1m-seed}"
                 --references "" --strategy proxyless:lam=0,weight_step=sandwich) ;;
  proxyless-pair-ml1m-seed[0-9]) args=(--search-epochs 10 --seed "${phase#proxyless-pair-ml1m-seed}"
                 --references "" --strategy proxyless:lam=0,weight_step=sandwich,estimator=pair_loss) ;;
  proxyless-pair1[5-9]-ml1m-seed[0-9]|proxyless-pair20-ml1m-seed[0-9])
                 epochs=${phase#proxyless-pair} epochs=${epochs%%-*}
                 args=(--search-epochs "$epochs" --seed "${phase##*-seed}"
                 --references "" --strategy proxyless:lam=0,weight_step=sandwich,estimator=pair_loss) ;;
  proxyless-pair-sw-ml1m-seed[0-9]) args=(--search-epochs 10 --seed "${phase#proxyless-pair-sw-ml1m-seed}"
                 --references "" --strategy proxyless:lam=0,weight_step=sandwich,estimator=pair_loss,sandwich_attention=weights) ;;
  proxyless-sandwich-hinge-seed[0-9]) args=(--search-epochs 10 --seed "${phase#proxyless-sandwich-hinge-seed}"
                 --references "" --strategy proxyless:resource_form=hinge,weight_step=sandwich) ;;
  ref-l2h96-seed[0-9]) args=(--search-epochs 5 --seed "${phase#ref-l2h96-seed}" --references "" --strategy ""
                 --arch '{"depth":2,"hidden":96,"inner":[256,192],"embedding":96,"heads":4,"attention":"softmax"}') ;;
  max-seed[0-9]) args=(--search-epochs 5 --seed "${phase#max-seed}" --references max --strategy "") ;;
  baselines) args=(--search-epochs 5 --references "" --strategy proxyless --strategy random) ;;
  budget2e8) common=("${common[@]/0.333x/0.6837x}")
             args=(--search-epochs 5 --references "" --strategy easrec --strategy darts --strategy recnas
                   --strategy easrec:attention=softmax --strategy proxyless --strategy random) ;;
  budget2e8-10-seed[0-9]) common=("${common[@]/0.333x/0.6837x}")
             args=(--search-epochs 10 --seed "${phase#budget2e8-10-seed}" --references ""
                   --strategy easrec:attention=softmax --strategy darts:weight_step=sandwich
                   --strategy recnas:weight_step=sandwich) ;;
  budget2e8-hinge-seed[0-9]) common=("${common[@]/0.333x/0.6837x}")
             args=(--search-epochs 10 --seed "${phase#budget2e8-hinge-seed}" --references ""
                   --strategy easrec:attention=softmax,penalty=hinge) ;;
  budget2e8-proxyless20-seed[0-9]) common=("${common[@]/0.333x/0.6837x}")
             args=(--search-epochs 20 --seed "${phase#budget2e8-proxyless20-seed}" --references ""
                   --strategy proxyless:lam=0,weight_step=sandwich,estimator=pair_loss) ;;
  random-min-epochs) args=(--search-epochs 5 --references "" --strategy random --min-epochs 15) ;;
  plateau) args=(--search-epochs 5 --references "" --strategy "" --min-epochs 15
                 --arch '{"depth":4,"hidden":64,"inner":[128,192,256,192],"embedding":64,"heads":4,"attention":"linear"}') ;;
  max-linear) args=(--search-epochs 5 --references max-linear --strategy "") ;;
  slices) ;;
  long) args=(--search-epochs 15 --references "" --strategy easrec --strategy recnas --strategy darts) ;;
  *) echo "unknown phase $phase (base, baselines, budget2e8, budget2e8-10-seedN, budget2e8-hinge-seedN and budget2e8-proxyless20-seedN (N 0-9), max-linear, plateau, random-min-epochs, softmax, softmax-seedN (N 1-9), softmax10-seedN (N 0-9), max-seedN (N 0-9), linear10-seedN (N 0-9), others10-seedN (N 0-9), recnas10-seedN (N 0-9), recnas10band-seedN (N 0-9), recnas10defer-seedN (N 0-9), darts10-seedN (N 0-9), softmax10-hinge-seedN (N 0-9), softmax10-sandwich-hinge-seedN (N 0-9), softmax10-sandwich-noconstraint-seedN (N 0-9), proxyless-hinge-seedN (N 0-9), proxyless-sandwich-hinge-seedN (N 0-9), proxyless-softmax-seedN (N 0-9), proxyless-ce-seedN (N 0-9), proxyless-ce-sandwich-seedN (N 0-9), proxyless-ce-sandwich-ml1m-seedN (N 0-9), proxyless-pair-ml1m-seedN (N 0-9), proxyless-pair-sw-ml1m-seedN (N 0-9), proxyless-pair20-ml1m-seedN and proxyless-pairE-ml1m-seedN (E 15-19, N 0-9), ref-l2h96-seedN (N 0-9), reproject-PHASE, lr, long, refs, sandwich, sandwich-warm, seed1, slices, beauty, beauty10, beauty10-easrec, beauty10-easrec-seedN (N 1-9), beauty10-seedN (N 1-9), beauty10band-seedN (N 0-9), beauty10-others-seedN (N 1-9))" >&2; exit 2 ;;
esac
if [ "$phase" = slices ]; then
    for run in base/darts__1.95e_07 sandwich/darts_weight_step_sandwich__1.95e_07 base/easrec__1.95e_07 \
               sandwich/easrec_weight_step_sandwich__1.95e_07 \
               sandwich-warm/easrec_weight_step_sandwich_warmup_epochs_10_tau_initial_9.31__1.95e_07; do
        kind='"softmax"'; [[ $run == *easrec* ]] && kind='"linear"'  # EASRec's one kind; gates: the run's
        archs=()
        for a in '"depth":4,"hidden":128,"inner":256' '"depth":1,"hidden":128,"inner":256' \
                 '"depth":4,"hidden":64,"inner":192' '"depth":2,"hidden":96,"inner":192' '"depth":3,"hidden":64,"inner":256' \
                 '"depth":1,"hidden":128,"inner":128' '"depth":3,"hidden":128,"inner":128'; do
            archs+=(--arch "{$a,\"attention\":$kind}")
        done
        "$py" benchmarks/slice_ranking.py "$out/$run" "${archs[@]}" --json "$out/$run/slices.json" || exit 1
    done
    exit 0
fi
dir="$out/$phase"
if [ -n "$source_dir" ]; then
    dir="$out/$dest_phase"
    for run in "$source_dir"/*/; do
        run=${run%/} name=$(basename "$run")
        [ -f "$run/result.json" ] || continue
        [ -e "$dir/$name" ] && continue
        mkdir -p "$dir/$name"
        if [ -f "$run/search.json" ] && "$py" benchmarks/reproject.py --changed-only "$run"; then
            cp "$run/config.json" "$run/search.json" "$run/supernet.pt" "$dir/$name/"
        else
            cp -r "$run/." "$dir/$name/"
        fi
    done
fi
base=("$py" benchmarks/search_compare.py "${common[@]}" "${args[@]}" --out "$dir")
mkdir -p "$dir/logs"
"${base[@]}" --list | grep -F -- "${ONLY:-}" | while IFS= read -r name; do
    printf '%s\0' "$name"
done | xargs -0 -P "$slots" -I{} bash -c 'log="$1/logs/$(echo "$2" | tr -c "[:alnum:].=-" _).log"
    "${@:3}" --only "$2" > "$log" 2>&1; echo "exit $?: $2"' _ "$dir" {} "${base[@]}"
"${base[@]}" --table-only | tail -n +2
