#!/usr/bin/env python
"""Peer run: RecBole 1.2.1's SASRec on ML-100k or ML-1M with the protocol and model size of the nasrec run.

Run with the RecBole venv (benchmarks/recbole_peer/setup_venv.sh), from anywhere:

    ../recbole-venv/bin/python benchmarks/recbole_peer/run_recbole.py
    ../recbole-venv/bin/python benchmarks/recbole_peer/run_recbole.py \
        --data ../shared/data/ml-1m/ml-1m_sasrec5.txt --out benchmarks/out/recbole_peer_ml1m

A `.txt` file is read as SASRec-style `user item` lines in time order (ML-1M's `ml-1m_sasrec5.txt`): it
is converted to an atomic `.inter` whose timestamp is the line number, so RecBole's time order is the
file order (what nasrec reads).

Writes OUT/recbole.json (rewritten after every epoch, so a killed run keeps its history),
OUT/recbole_sequences.json (the per-user item order RecBole trained and evaluated on, for compare.py's
order check) and OUT/recbole_test_ranks.json (each test user's full-ranking rank of its target under the
best model, keyed by the raw user id, for paired.py's paired test against nasrec runs). RecBole's own log/,
log_tensorboard/ and saved/ go to OUT/recbole_work/.

Timing: `cumulative_seconds` of an epoch is the wall time from the call of `Trainer.fit` to the end of
that epoch's validation (training + validation + RecBole's best-model checkpointing), i.e. it EXCLUDES
reading the file, RecBole's dataset build (prefix augmentation, splitting), dataloader and model
construction, which are reported separately as `setup_seconds`.

Data order: RecBole reads `timestamp:float` into a float32 tensor; at ~8.9e8 s float32 steps by 64 s, so
interactions less than a minute or so apart become ties, which RecBole's stable sort leaves in FILE order.
The ML-100k file is not time-sorted, so on the raw file RecBole's per-user order differs from the true
time order (that nasrec uses, float64) for most users. `--order sorted` (default) therefore gives RecBole
the same rows re-ordered by (user, exact timestamp), ties kept in file order: RecBole's per-user order
then equals nasrec's. `--order raw` symlinks the file unchanged (RecBole as a user would run it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

# Before torch is imported: one thread, and RecBole's torch.load of its own checkpoints (torch >= 2.6
# defaults to weights_only=True, which RecBole 1.2.1's checkpoints do not pass).
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def dataset_name(src: Path) -> str:
    """RecBole's dataset name: the file stem without '-' (for "ml-100k" RecBole would silently read its
    own bundled copy instead of ours)."""
    return src.stem.replace("-", "")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="../shared/data/ml-100k/ml-100k.inter",
                   help="RecBole atomic .inter file (relative paths: from the repo root)")
    p.add_argument("--out", default="benchmarks/out/recbole_peer", help="output dir (relative: from the repo root)")
    p.add_argument("--order", choices=("sorted", "raw"), default="sorted",
                   help="sorted: rows re-ordered by (user, exact timestamp) so RecBole's float32 timestamps "
                        "cannot reorder ties; raw: the file as is (symlink)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--max-len", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-hours", type=float, default=2.0, help="stop training after this wall time")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an earlier run's OUT from its best-model checkpoint (RUN_DIR/recbole_work/saved): "
                        "its history up to that epoch is kept and its times are added; see resume_point()")
    p.add_argument("--test-every-epoch", action="store_true",
                   help="diagnostic: also record each epoch's test metrics (history[].test_diagnostic). Never used "
                        "for model selection or early stopping; its seconds are left out of the cumulative times")
    return p.parse_args()


def prepare_data(src: Path, data_dir: Path, order: str) -> dict:
    """RecBole wants DIR/NAME/NAME.inter: a re-ordered copy (sorted) or a symlink (raw), never in git."""
    data_dir.mkdir(parents=True, exist_ok=True)
    dst = data_dir / f"{dataset_name(src)}.inter"
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if src.suffix == ".txt":
        return convert_user_item_lines(src, dst)
    if order == "raw":
        dst.symlink_to(src)
        return {"file": str(src), "recbole_file": str(dst), "order": "raw (symlink, file order)"}
    lines = src.read_text().splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line.strip()]
    names = [h.split(":")[0] for h in header.split("\t")]
    u_col, t_col = names.index("user_id"), names.index("timestamp")
    fields = [r.split("\t") for r in rows]
    times = np.array([float(f[t_col]) for f in fields], dtype=np.float64)
    users = np.array([f[u_col] for f in fields])
    idx = np.argsort(times, kind="stable")  # exact time, ties in file order ...
    idx = idx[np.argsort(users[idx], kind="stable")]  # ... then grouped by user (what nasrec does)
    dst.write_text("\n".join([header, *(rows[i] for i in idx)]) + "\n")
    return {"file": str(src), "recbole_file": str(dst),
            "order": "sorted: same rows, re-ordered by (user, float64 timestamp), ties in file order"}


def convert_user_item_lines(src: Path, dst: Path) -> dict:
    """`user item` lines in time order -> atomic .inter with timestamp = line number (exact in float32 up
    to 2**24 lines; ML-1M has ~1e6)."""
    rows = []
    for n, line in enumerate(src.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2:
            raise SystemExit(f"{src}:{n}: expected 'user item', got {line!r}")
        rows.append(f"{parts[0]}\t{parts[1]}\t{n}")
    if len(rows) >= 2**24:
        raise SystemExit(f"{src}: {len(rows)} lines; line numbers as float32 timestamps would collide")
    dst.write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows) + "\n")
    return {"file": str(src), "recbole_file": str(dst),
            "order": "user item lines: file order, timestamp = line number"}


def recbole_config(args: argparse.Namespace, data_root: Path, work: Path) -> dict:
    return {
        # environment
        "use_gpu": False, "seed": args.seed, "reproducibility": True, "show_progress": False,
        "data_path": str(data_root), "checkpoint_dir": str(work / "saved"), "worker": 0,
        # data: no filtering beyond nasrec's min_seq_len 3 (ML-100k users have >= 20 interactions anyway)
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[3,inf)", "item_inter_num_interval": "[0,inf)",
        "rm_dup_inter": None, "val_interval": None, "normalize_all": False,
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        # protocol: leave-one-out in time order, full ranking, selection on valid NDCG@10
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "metrics": ["Recall", "MRR", "NDCG", "Hit"], "topk": [10, 20],
        "valid_metric": "NDCG@10", "valid_metric_bigger": True, "eval_step": 1, "metric_decimal_place": 6,
        "eval_batch_size": 256, "repeatable": True,
        # training
        "epochs": args.epochs, "train_batch_size": 128, "learner": "adam", "learning_rate": 1e-3,
        "weight_decay": 0.0, "stopping_step": 10, "train_neg_sample_args": None, "clip_grad_norm": None,
        # model: SASRec d 64, inner 64, 2 layers, 1 head, dropout 0.2, full-softmax CE
        "n_layers": 2, "n_heads": 1, "hidden_size": 64, "inner_size": 64,
        "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "hidden_act": "gelu",
        "layer_norm_eps": 1e-12, "initializer_range": 0.02, "loss_type": "CE",
    }


def dump_sequences(train_ds, valid_ds, test_ds, path: Path) -> dict:
    """Per-user item tokens in the order RecBole trains and evaluates on.

    Rebuilt from the split datasets: the user's first training prefix's single history item, the
    training targets in row order, then the validation and the test target; checked against the
    test row's history (its last MAX_ITEM_LIST_LENGTH items)."""
    def rows(ds):
        inter = ds.inter_feat
        return (inter[ds.uid_field].numpy(), inter[ds.iid_field].numpy(),
                inter[ds.item_id_list_field].numpy(), inter[ds.item_list_length_field].numpy())

    def tok(i: int) -> str:
        return str(train_ds.id2token(train_ds.iid_field, int(i)))

    seqs: dict[int, list[int]] = {}
    u, t, lst, n = rows(train_ds)
    for uid, target, items, length in zip(u, t, lst, n, strict=True):
        if uid not in seqs:
            assert length == 1, "a user's first training prefix is not of length 1"
            seqs[uid] = [int(items[0])]
        seqs[uid].append(int(target))
    for ds in (valid_ds, test_ds):
        u, t, lst, n = rows(ds)
        for uid, target, items, length in zip(u, t, lst, n, strict=True):
            if ds is test_ds:
                assert seqs[uid][-int(length):] == [int(x) for x in items[:length]], "test history mismatch"
            seqs[uid].append(int(target))
    out = {str(train_ds.id2token(train_ds.uid_field, int(uid))): [tok(i) for i in s] for uid, s in seqs.items()}
    path.write_text(json.dumps(out))
    return {"users": len(out), "items": int(train_ds.item_num - 1),
            "interactions": int(sum(len(s) for s in out.values())), "training_prefixes": int(len(train_ds))}


@torch.no_grad()
def test_ranks(trainer, test_data) -> dict[str, int]:
    """Each test user's 0-based rank of its target among all items under RecBole's own full-sort scores
    (padding masked, history kept), ties counted against the target as nasrec does (`rank_of_target`)."""
    dataset = test_data._dataset
    ranks: dict[str, int] = {}
    trainer.model.eval()
    for batch in test_data:
        interaction, scores, positive_u, positive_i = trainer._full_sort_batch_eval(batch)
        rows = scores.shape[0]
        if len(positive_u) != rows or not torch.equal(positive_u.cpu(), torch.arange(rows)):
            raise SystemExit("test_ranks: expected one target per test row (leave-one-out)")
        target = scores[positive_u, positive_i].unsqueeze(1)
        above = (scores >= target) & (scores > -np.inf)
        above[positive_u, positive_i] = False
        users = dataset.id2token(dataset.uid_field, interaction[dataset.uid_field].cpu().numpy())
        for user, rank in zip(users, above.sum(dim=1).tolist(), strict=True):
            if str(user) in ranks:
                raise SystemExit(f"test_ranks: user {user} has two test rows")
            ranks[str(user)] = int(rank)
    return ranks


class TimeCap(Exception):
    pass


def resume_point(run_dir: Path, work: Path) -> tuple[Path, list[dict]]:
    """The earlier run's best-model checkpoint, copied into this run's work dir (RecBole overwrites the file it
    resumed from with each new best), and the earlier history up to that checkpoint's epoch.

    RecBole saves only its best model, so a run resumes from its best epoch, not its last. What continues exactly:
    weights, Adam state, the early-stopping state and the training order (the shuffle generator is wound forward
    by the epochs already trained, see skip_shuffles). What does not: the global torch RNG (dropout masks), which
    RecBole's checkpoint does not hold, so the later epochs are a statistically equivalent continuation, not a
    replay of an uninterrupted run."""
    saved = sorted((run_dir / "recbole_work" / "saved").glob("*.pth"))
    if len(saved) != 1:
        raise SystemExit(f"--resume: expected one checkpoint in {run_dir}/recbole_work/saved, found {len(saved)}")
    ckpt = torch.load(saved[0], map_location="cpu")
    epochs_done = int(ckpt["epoch"]) + 1
    earlier = json.loads((run_dir / "recbole.json").read_text())["train"]["history"]
    kept = [h for h in earlier if h["epoch"] <= epochs_done]
    if len(kept) != epochs_done:
        raise SystemExit(f"--resume: {run_dir}/recbole.json lacks epochs 1-{epochs_done} of its checkpoint")
    copy = work / "saved" / f"resumed-after-epoch{epochs_done}.pth"
    copy.parent.mkdir(parents=True, exist_ok=True)
    copy.write_bytes(saved[0].read_bytes())
    return copy, kept


def skip_shuffles(train_data, epochs: int) -> None:
    """Consume the shuffle generator as `epochs` training epochs did: each iterator draws a base seed, and the
    sampler draws its permutations (torch's RandomSampler draws one more than it yields); no batch is built."""
    for _ in range(epochs):
        for _ in iter(train_data)._sampler_iter:
            pass


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    os.chdir(REPO)
    out = Path(args.out).resolve()
    resume_dir = Path(args.resume).resolve() if args.resume else None  # before RecBole's chdir
    work = out / "recbole_work"
    work.mkdir(parents=True, exist_ok=True)
    src = Path(args.data).resolve()
    data_info = prepare_data(src, out / "data" / dataset_name(src), args.order)

    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_logger, init_seed

    os.chdir(work)  # RecBole writes ./log and ./log_tensorboard
    setup_start = time.perf_counter()
    config = Config(model="SASRec", dataset=dataset_name(src),
                    config_dict=recbole_config(args, out / "data", work))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    torch.set_num_threads(args.threads)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    data_info.update(dump_sequences(train_data._dataset, valid_data._dataset, test_data._dataset,
                                    out / "recbole_sequences.json"))
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    n_params = sum(p.numel() for p in model.parameters())
    setup_seconds = time.perf_counter() - setup_start

    history: list[dict] = []
    report = {
        "tool": "recbole", "model": "SASRec", "status": "running",
        "versions": {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "machine": {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "processor": platform.processor()},
        "data": data_info, "params": n_params,
        "config": {k: config[k] for k in recbole_config(args, out / "data", work)
                   if k not in ("data_path", "checkpoint_dir")},
        "time_basis": "cumulative_seconds: wall time from Trainer.fit() start to the end of each epoch's "
                      "validation (train + valid + best-model checkpointing); excludes data loading, "
                      "dataset build and model construction (setup_seconds). "
                      "cumulative_cpu_seconds: CPU time of the process over the same span "
                      "(one compute thread, so a measure that other jobs on the shared cores barely move)",
        "train": {"setup_seconds": setup_seconds, "history": history},
    }
    result_path = out / "recbole.json"

    def write() -> None:
        tmp = result_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2, default=float))
        tmp.replace(result_path)

    cap_seconds = args.max_hours * 3600.0
    fit_start = 0.0
    cpu_start = 0.0

    class TimedTrainer(Trainer):
        def _train_epoch(self, *a, **kw):
            t = time.perf_counter()
            loss = super()._train_epoch(*a, **kw)
            self._epoch_train_seconds = time.perf_counter() - t
            return loss

        def _valid_epoch(self, *a, **kw):
            t = time.perf_counter()
            score, result = super()._valid_epoch(*a, **kw)
            self._epoch_valid_seconds = time.perf_counter() - t
            self._epoch_valid_result = result
            return score, result

    trainer = TimedTrainer(config, model)
    offset_seconds = offset_cpu = 0.0
    diagnostic = {"seconds": 0.0, "cpu": 0.0}  # time spent on --test-every-epoch, kept out of the timings
    if resume_dir is not None:
        checkpoint, kept = resume_point(resume_dir, work)
        trainer.resume_checkpoint(checkpoint)
        skip_shuffles(train_data, trainer.start_epoch)
        history.extend(kept)
        offset_seconds, offset_cpu = kept[-1]["cumulative_seconds"], kept[-1]["cumulative_cpu_seconds"]
        report["train"]["resumed"] = {
            "from": str(resume_dir), "after_epoch": trainer.start_epoch,
            "note": "epochs after `after_epoch` continue the earlier run's best-model checkpoint (weights, Adam "
                    "state, shuffle order); dropout masks differ from an uninterrupted run. Their cumulative "
                    "times add this process's fit time to the earlier run's time at `after_epoch`."}

    def test_diagnostic() -> dict[str, float]:
        """The current weights' test metrics; the global RNG is restored so that dropout draws go on as
        without the call."""
        t, c, rng = time.perf_counter(), time.process_time(), torch.get_rng_state()
        result = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        torch.set_rng_state(rng)
        diagnostic["seconds"] += time.perf_counter() - t
        diagnostic["cpu"] += time.process_time() - c
        return {k: float(v) for k, v in result.items()}

    def on_epoch(epoch_idx: int, valid_score: float) -> None:
        elapsed = time.perf_counter() - fit_start + offset_seconds - diagnostic["seconds"]
        cpu = time.process_time() - cpu_start + offset_cpu - diagnostic["cpu"]
        valid = {k: float(v) for k, v in trainer._epoch_valid_result.items()}
        history.append({"epoch": epoch_idx + 1, "loss": float(trainer.train_loss_dict[epoch_idx]),
                        "valid_ndcg@10": float(valid_score), "valid": valid,
                        "train_seconds": trainer._epoch_train_seconds,
                        "valid_seconds": trainer._epoch_valid_seconds, "cumulative_seconds": elapsed,
                        "cumulative_cpu_seconds": cpu, "loadavg_1min": os.getloadavg()[0]})
        if args.test_every_epoch:
            history[-1]["test_diagnostic"] = test_diagnostic()
        print(f"epoch {epoch_idx + 1}: loss {history[-1]['loss']:.4f} valid ndcg@10 {valid_score:.4f} "
              f"train {trainer._epoch_train_seconds:.1f}s valid {trainer._epoch_valid_seconds:.1f}s "
              f"cum {elapsed:.0f}s", flush=True)
        write()
        if elapsed > cap_seconds:
            raise TimeCap(f"stopped after {elapsed:.0f}s (cap {cap_seconds:.0f}s)")

    write()
    report["train"]["loadavg_at_start"] = os.getloadavg()
    fit_start, cpu_start = time.perf_counter(), time.process_time()
    stopped_by = "early_stopping_or_epochs"
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=on_epoch)
    except TimeCap as exc:
        stopped_by = f"time_cap: {exc}"
    fit_seconds = time.perf_counter() - fit_start + offset_seconds - diagnostic["seconds"]
    fit_cpu_seconds = time.process_time() - cpu_start + offset_cpu - diagnostic["cpu"]
    if stopped_by.startswith("early") and len(history) < args.epochs:
        stopped_by = "early_stopping"
    elif stopped_by.startswith("early"):
        stopped_by = "max_epochs"

    test_start = time.perf_counter()
    test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    test_seconds = time.perf_counter() - test_start
    best = max(history, key=lambda h: h["valid_ndcg@10"])  # first epoch with the best score
    report["status"] = "done"
    report["train"].update({
        "seconds": fit_seconds, "cpu_seconds": fit_cpu_seconds, "epochs_run": len(history), "best_epoch": best["epoch"],
        "best_valid_ndcg@10": best["valid_ndcg@10"], "stopped_by": stopped_by, "test_seconds": test_seconds,
    })
    # A resumed run whose later epochs never beat the checkpoint keeps the checkpoint's validation result.
    best_valid = trainer.best_valid_result if trainer.best_valid_result is not None else best["valid"]
    report["metrics"] = {"valid": {k: float(v) for k, v in best_valid.items()},
                         "test": {k: float(v) for k, v in test.items()},
                         "exclude_history": False,
                         "note": "RecBole's full ranking of a SEQUENTIAL model does not exclude history items "
                                 "(FullSortEvalDataLoader passes no history index); only padding item 0 is masked"}
    write()
    # Same (best) model that evaluate() just loaded; written after recbole.json so a failure here loses nothing.
    ranks = test_ranks(trainer, test_data)
    (out / "recbole_test_ranks.json").write_text(json.dumps({
        "protocol": "full", "exclude_history": False, "ties": "counted against the target",
        "reported_test": report["metrics"]["test"], "ranks": ranks}))
    print(json.dumps({"best_epoch": best["epoch"], "best_valid_ndcg@10": best["valid_ndcg@10"],
                      "fit_seconds": round(fit_seconds, 1), "test": report["metrics"]["test"]}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
