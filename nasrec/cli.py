"""The `nasrec` command: parses options, calls `nasrec.api`, prints with rich.

A `NasrecError` (bad input, impossible request) is printed as one line on stderr with exit code 2
and no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nasrec import api
from nasrec.arch import list_spaces
from nasrec.errors import ConfigError, NasrecError
from nasrec.search import PROJECTION_FILL
from nasrec.train import EpochLog, TrainConfig, TrainState

if TYPE_CHECKING:  # importing it loads Ray and MLflow: only the trials path pays for that
    from nasrec.trials import TrialsPlan

app = typer.Typer(add_completion=False, no_args_is_help=True, help="AutoML for sequential recommenders.")
spaces_app = typer.Typer(no_args_is_help=True, help="Search spaces.")
data_app = typer.Typer(no_args_is_help=True, help="Datasets.")
app.add_typer(spaces_app, name="spaces")
app.add_typer(data_app, name="data")

console = Console()
err_console = Console(stderr=True)

DataOpt = Annotated[str, typer.Option("--data", help="Interaction file, or 'synthetic' (embedded default).")]
FormatOpt = Annotated[str, typer.Option("--format", help="auto|pairs|lines|inter|csv|parquet")]
SpaceOpt = Annotated[str, typer.Option("--space", help="Built-in space name or a YAML path.")]
MaxLenOpt = Annotated[int | None, typer.Option("--max-len", help="Sequence length (<= the space's).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _print_json(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")


def _log_line(text: str) -> None:
    """A plain line per epoch when output is a log file (progress bars only redraw on terminals)."""
    if not console.is_terminal:
        console.print(text, highlight=False, soft_wrap=True)


def _metrics_table(result: dict[str, Any]) -> Table:
    table = Table(title=f"arch {result['arch_id']}  flops {result['flops']:,}  params {result['params']:,}")
    table.add_column("split/protocol")
    keys = list(result["metrics"]["test"]["full"])
    for k in keys:
        table.add_column(k, justify="right")
    rows = [("valid/full", result["metrics"]["valid"]["full"])]
    rows += [(f"test/{p}", m) for p, m in result["metrics"]["test"].items()]
    for name, metrics in rows:
        table.add_row(name, *(f"{metrics[k]:.4f}" for k in keys))
    return table


DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when torch sees one), cpu, cuda or cuda:N.")]


@app.command()
def train(
    data: DataOpt = "synthetic",
    format: FormatOpt = "auto",
    space: SpaceOpt = "tiny",
    arch: Annotated[str, typer.Option(help="max, min, a JSON object or a JSON file.")] = "max",
    epochs: Annotated[int, typer.Option(min=1)] = 200,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    lr_schedule: Annotated[str, typer.Option(help="constant, or linear|cosine decay towards 0 over --epochs "
                                             "(per step).")] = "constant",
    warmup_epochs: Annotated[float, typer.Option(min=0.0, help="Linear learning-rate warm-up, in epochs.")] = 0.0,
    patience: Annotated[int, typer.Option(min=1, help="Epochs without better valid NDCG@10.")] = 10,
    min_epochs: Annotated[int, typer.Option(min=0, help="Patience may not stop training before this epoch (deep "
                                            "archs can sit on a popularity plateau at first).")] = 0,
    max_minutes: Annotated[float | None, typer.Option(help="Wall-time budget: no new "
                                                      "epoch starts after it; the best valid weights are kept.")
                           ] = None,
    max_len: MaxLenOpt = None,
    seed: int = 0,
    min_seq_len: Annotated[int, typer.Option(min=3)] = 3,
    kcore: Annotated[int, typer.Option(min=0)] = 0,
    exclude_history: Annotated[bool, typer.Option(help="Drop history items from the full ranking.")] = False,
    all_windows: Annotated[bool, typer.Option(help="Use every max_len window of long histories.")] = True,
    window_stride: Annotated[int | None, typer.Option(min=1, help="Step between training windows (default "
                                                      "max_len); smaller: overlapping windows, more context.")] = None,
    group_by_length: Annotated[bool, typer.Option(help="Batch windows of similar length together (less "
                                                  "padding to compute; batches are still shuffled).")] = False,
    threads: Annotated[int | None, typer.Option(min=1, help="torch CPU threads.")] = None,
    device: DeviceOpt = "auto",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/train"),
    resume: Annotated[bool, typer.Option(help="Continue from OUT/checkpoint.pt (the same options; --epochs, "
                                         "--patience and --max-minutes may change).")] = False,
) -> None:
    """Train one architecture, evaluate test once, write OUT/result.json."""
    if max_minutes is not None and max_minutes <= 0:
        raise ConfigError(f"--max-minutes must be > 0, got {max_minutes}")
    if threads:
        torch.set_num_threads(threads)
    config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, lr_schedule=lr_schedule,
                         warmup_epochs=warmup_epochs, patience=patience, min_epochs=min_epochs,
                         seed=seed, exclude_history=exclude_history, all_windows=all_windows,
                         window_stride=window_stride, group_by_length=group_by_length,
                         max_seconds=None if max_minutes is None else max_minutes * 60)
    data_opts = api.DataOptions(source=data, format=format, min_seq_len=min_seq_len, kcore=kcore)
    with Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=False) as progress:
        task = progress.add_task("", total=epochs)

        def on_start(info: dict[str, Any]) -> None:
            d = info["data"]
            progress.console.print(f"data {d['name']}: {d['users']:,} users, {d['items']:,} items, "
                                   f"{d['interactions']:,} interactions ({d['dropped_users']} users dropped); "
                                   f"arch {info['arch'].label}, max_len {info['max_len']}")

        def on_epoch(log: EpochLog, state: TrainState) -> None:
            desc = (f"loss {log.loss:.4f}  valid ndcg@10 {log.valid['ndcg@10']:.4f}  "
                    f"best {state.best_score:.4f}@{state.best_epoch}  {log.seconds:.1f}s/epoch")
            progress.update(task, completed=log.epoch, description=desc)
            _log_line(f"epoch {log.epoch}: {desc}")

        result = api.train(data_opts, space=space, arch=arch, out=out, max_len=max_len, config=config,
                           resume=resume, device=device, on_epoch=on_epoch, on_start=on_start)
    console.print(_metrics_table(result))
    console.print(f"wrote {out / 'result.json'} and {out / 'model'}/")


def _parse_sets(entries: list[str]) -> dict[str, str]:
    """`--set a=1 --set b=x` and `--set a=1,b=x` alike (no declared choice holds a comma: tested)."""
    params: dict[str, str] = {}
    for entry in entries:
        for pair in entry.split(","):
            key, sep, value = (part.strip() for part in pair.partition("="))
            if not sep or not key:
                raise NasrecError(f"--set expects key=value (several: a=1,b=2 or repeated --set), got {pair!r}")
            if key in params:
                raise NasrecError(f"--set {key} is given twice")
            params[key] = value
    return params


def _parse_budgets(text: str) -> list[float]:
    budgets = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            budgets.append(float(part))
        except ValueError:
            raise NasrecError(f"--budget-flops expects numbers separated by commas, got {part!r}") from None
    if not budgets or any(not (b > 0) for b in budgets):
        raise NasrecError("--budget-flops is required and must be positive (see `nasrec spaces show NAME`); "
                          "a comma-separated list runs trials at each budget")
    return budgets


def _trial_line(row: dict[str, Any]) -> str:
    head = f"trial {row['trial_id']} {row['strategy']} budget {row['budget']:.4g}"
    if row["status"] == "failed":
        return f"{head}: failed: {row['error']}"
    flops = f"{row['flops']:,.0f}" if row.get("flops") is not None else "?"
    test = row.get("test_ndcg@10")
    return (f"{head}: {row['status']}  flops {flops}  valid ndcg@10 {row['valid_ndcg@10']:.4f}"
            + (f"  test ndcg@10 {test:.4f}" if test is not None else "") + f"  node {str(row['node_id'])[:8]}")


@app.command()
def search(
    strategy: Annotated[str, typer.Option(help="Strategy name, a comma-separated list, or 'all' "
                                               "(see `nasrec strategies`).")] = "darts",
    budget_flops: Annotated[str, typer.Option("--budget-flops", help="FLOPs budget per sequence; a comma-separated "
                                              "list runs trials at each budget.")] = "",
    data: DataOpt = "synthetic",
    format: FormatOpt = "auto",
    space: SpaceOpt = "tiny",
    max_len: MaxLenOpt = None,
    search_epochs: Annotated[int, typer.Option(min=1, help="Supernet epochs (random: see --set n_candidates).")] = 10,
    retrain_epochs: Annotated[int, typer.Option(min=1)] = 50,
    batch_size: Annotated[int, typer.Option(min=1)] = 128,
    lr: Annotated[float, typer.Option(min=0.0)] = 1e-3,
    patience: Annotated[int, typer.Option(min=1, help="Retrain epochs without better valid NDCG@10.")] = 10,
    min_epochs: Annotated[int, typer.Option(min=0, help="Patience may not stop the retrain before this epoch.")
                          ] = 0,
    seed: int = 0,
    retrain_from_scratch: bool = False,
    exclude_history: bool = False,
    all_windows: Annotated[bool, typer.Option(help="Use every max_len window of long histories.")] = True,
    window_stride: Annotated[int | None, typer.Option(min=1, help="Step between training windows (default "
                                                      "max_len); smaller: overlapping windows, more context.")] = None,
    projection_fill: Annotated[float, typer.Option(help="Budget guarantee: a derived arch over "
                                                   "the budget is replaced by the most preferred arch costing "
                                                   "this share of the budget or more (0: any arch within it).")
                               ] = PROJECTION_FILL,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Strategy hyper-parameter key=value, "
                                                   "repeatable or comma-separated (held fixed in trials).")] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads of a single run (trials use "
                                                "--cpus-per-trial).")] = None,
    device: DeviceOpt = "auto",
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/search"),
    resume: Annotated[Path | None, typer.Option(help="Continue the run, or the trials search, in this "
                                                "directory (a search's options come from its search.json).")] = None,
    trials: Annotated[int, typer.Option(min=1, help="Trials per (strategy, budget); more than one runs them on "
                                        "Ray Tune, proposed by Optuna.")] = 1,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Trials at a time (default: as CPUs allow).")] = None,
    cpus_per_trial: Annotated[float, typer.Option(min=0.01, help="CPUs (and torch threads) per trial.")] = 1.0,
    gpus_per_trial: Annotated[float, typer.Option(min=0.0)] = 0.0,
    objective: Annotated[str, typer.Option(help="ndcg: validation NDCG@10 (TPE); pareto: NDCG@10 up and FLOPs "
                                           "down (NSGA-II).")] = "ndcg",
    early_stop: Annotated[bool, typer.Option("--early-stop", help="ASHA on validation NDCG@10 per retrain "
                                             "epoch.")] = False,
    max_failures: Annotated[int, typer.Option(min=0, help="Retries of a failing trial.")] = 0,
    address: Annotated[str | None, typer.Option(help="Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
                                                "(default: a local Ray).")] = None,
    storage: Annotated[str | None, typer.Option(help="Trial state and run dirs, shared by every node: a "
                                                "directory or s3://... (default OUT/tune).")] = None,
    tracking_uri: Annotated[str | None, typer.Option("--tracking-uri", help="MLflow store of the trials (default "
                                                     "$MLFLOW_TRACKING_URI or sqlite:///mlruns/mlflow.db).")] = None,
) -> None:
    """Search an architecture under a FLOPs budget, retrain it, evaluate test once; or run trials of several
    configurations, strategies and budgets (--trials, lists), logged to MLflow."""
    from nasrec.search import SearchConfig, run_search

    names = [s.strip() for s in strategy.split(",") if s.strip()]
    if resume is not None and (resume / "search.json").is_file():
        _search_trials_resume(resume, address=address, concurrency=concurrency, tracking_uri=tracking_uri)
        return
    budgets = _parse_budgets(budget_flops)
    if trials > 1 or len(budgets) > 1 or len(names) > 1 or names == ["all"]:
        config = SearchConfig(strategy=names[0], budget_flops=budgets[0],
                              space=space, params=_parse_sets(set_ or []), max_len=max_len,
                              search_epochs=search_epochs, retrain_epochs=retrain_epochs, batch_size=batch_size,
                              lr=lr, patience=patience, min_epochs=min_epochs, seed=seed,
                              retrain_from_scratch=retrain_from_scratch,
                              exclude_history=exclude_history, all_windows=all_windows,
                              window_stride=window_stride, device=device, projection_fill=projection_fill)
        _search_trials(api.DataOptions(source=data, format=format), config, names, budgets, out=out,
                       trials=trials, concurrency=concurrency, cpus_per_trial=cpus_per_trial,
                       gpus_per_trial=gpus_per_trial, objective=objective, early_stop=early_stop,
                       max_failures=max_failures, address=address, storage=storage, tracking_uri=tracking_uri)
        return
    budget_flops_value = budgets[0]
    if threads:
        torch.set_num_threads(threads)
    config = SearchConfig(strategy=strategy, budget_flops=budget_flops_value, space=space,
                          params=_parse_sets(set_ or []), max_len=max_len, search_epochs=search_epochs,
                          retrain_epochs=retrain_epochs, batch_size=batch_size, lr=lr, patience=patience,
                          min_epochs=min_epochs, seed=seed, retrain_from_scratch=retrain_from_scratch,
                          exclude_history=exclude_history, all_windows=all_windows, window_stride=window_stride,
                          device=device, projection_fill=projection_fill)
    with Progress(TextColumn("[bold]{task.fields[stage]}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TextColumn("{task.description}"), console=console) as progress:
        tasks: dict[str, Any] = {}

        def on_stage(name: str, info: dict[str, Any]) -> None:
            if name == "search":
                tasks["search"] = progress.add_task("", total=info["steps"], stage="search ")
            elif name == "data":
                d, b = info["data"], info["budget"]
                progress.console.print(
                    f"data {d['name']}: {d['users']:,} users, {d['items']:,} items; max_len {info['max_len']}; "
                    f"space FLOPs {b['min_flops']:,} .. {b['max_flops']:,}")
            elif name == "derived":
                p = info["projection"]
                note = f" (projected from {p['derived_flops']:,} FLOPs)" if p["projected"] else ""
                progress.console.print(f"derived {info['arch'].label}: {info['flops']:,} FLOPs{note}")
            elif name == "retrain":
                tasks["retrain"] = progress.add_task("", total=retrain_epochs, stage="retrain")

        def on_search_epoch(epoch: int, row: dict[str, Any]) -> None:
            loss = row.get("weight_loss")
            desc = f"loss {loss:.4f}  " if loss is not None else ""
            if "expected_flops" in row:
                desc += f"E[flops] {row['expected_flops']:.3g}  "
            arch = row.get("argmax") or row.get("arch")
            progress.update(tasks["search"], completed=epoch, description=f"{desc}arch {arch}")
            _log_line(f"search step {epoch}: {desc}arch {arch}")

        def on_retrain_epoch(log: EpochLog, state: TrainState) -> None:
            desc = (f"loss {log.loss:.4f}  valid ndcg@10 {log.valid['ndcg@10']:.4f}  "
                    f"best {state.best_score:.4f}@{state.best_epoch}")
            progress.update(tasks["retrain"], completed=log.epoch, description=desc)
            _log_line(f"retrain epoch {log.epoch}: {desc}")

        if resume is not None:
            out = resume
        result = run_search(api.DataOptions(source=data, format=format), config, out, resume=resume is not None,
                            on_stage=on_stage, on_search_epoch=on_search_epoch, on_retrain_epoch=on_retrain_epoch)
    console.print(_metrics_table(result))
    console.print(f"strategy {result['strategy']}: {result['flops']:,} FLOPs <= budget {budget_flops_value:,.0f}; "
                  f"search {result['search_seconds']:.1f}s, retrain {result['retrain_seconds']:.1f}s")
    console.print(f"wrote {out / 'result.json'}, {out / 'trace.json'} and {out / 'model'}/")


def _search_trials(data_opts: api.DataOptions, base: Any, strategies: list[str], budgets: list[float], *, out: Path,
                   trials: int, concurrency: int | None, cpus_per_trial: float, gpus_per_trial: float, objective: str,
                   early_stop: bool, max_failures: int, address: str | None, storage: str | None,
                   tracking_uri: str | None) -> None:
    from nasrec.orchestration import TrialsConfig
    from nasrec.trials import start_trials

    trials_config = TrialsConfig(strategies=tuple(strategies), budgets=tuple(budgets), trials=trials,
                                 concurrency=concurrency, cpus_per_trial=cpus_per_trial,
                                 gpus_per_trial=gpus_per_trial, objective=objective, early_stop=early_stop,
                                 max_failures=max_failures, address=address, storage=storage)
    plan = start_trials(data_opts, base, trials_config, out, tracking_uri=tracking_uri,
                        command=" ".join(["nasrec", *sys.argv[1:]]))
    config = plan.trials
    console.print(f"{plan.n_trials} trials: {', '.join(config.strategies)} x budgets "
                  f"{', '.join(f'{b:.4g}' for b in config.budgets)} x {config.trials}; "
                  f"MLflow {plan.tracker.tracking_uri} (parent run {plan.tracker.parent_run_id})")
    _run_and_print(plan)


def _search_trials_resume(path: Path, *, address: str | None, concurrency: int | None,
                          tracking_uri: str | None) -> None:
    from nasrec.trials import resume_trials

    plan = resume_trials(path, address=address, concurrency=concurrency, tracking_uri=tracking_uri)
    console.print(f"resuming {path}: {plan.logged_before} trials already logged "
                  f"(MLflow {plan.tracker.tracking_uri}, parent run {plan.tracker.parent_run_id})")
    _run_and_print(plan)


def _run_and_print(plan: TrialsPlan) -> None:
    outcome = plan.run(on_trial=lambda row: console.print(_trial_line(row), highlight=False, soft_wrap=True))
    counts = outcome.counts()
    table = Table(title=f"Pareto front (test NDCG@10 up, FLOPs down) of {counts['ok']} finished trials")
    for column in ("flops", "test ndcg@10", "strategy", "arch", "trial"):
        table.add_column(column, justify="right" if column in ("flops", "test ndcg@10") else "left")
    for r in outcome.front:
        table.add_row(f"{r['flops']:,.0f}", f"{r['ndcg@10']:.4f}", r["strategy"], r["arch"], r["trial_id"])
    console.print(table)
    console.print(f"{counts['ok']} ok, {counts['failed']} failed, {counts['stopped']} stopped early; "
                  f"trial runs under {outcome.out} (search.json); continue with --resume {outcome.out}")
    console.print(f"inspect every architecture: nasrec ui --tracking-uri {outcome.tracking_uri}")


@app.command()
def strategies(json_out: JsonOpt = False) -> None:
    """Registered search strategies and their hyper-parameters."""
    from nasrec.strategies.base import list_strategies

    described = {name: {"summary": cls.summary, "hyperparams": [p.describe() for p in cls.hyperparams]}
                 for name, cls in list_strategies().items()}
    if json_out:
        _print_json(described)
        return
    for name, d in described.items():
        console.print(f"[bold]{name}[/bold]: {d['summary']}")
        for p in d["hyperparams"]:
            rng = p["choices"] if "choices" in p else f"[{p['low']}, {p['high']}]"
            console.print(f"    {p['name']} ({p['type']}, default {p['default']}, range {rng}): {p['help']}")


@app.command("cost")
def cost_cmd(
    space: SpaceOpt = "sasrec-ml1m",
    arch: Annotated[str, typer.Option(help="max, min, a JSON object or a JSON file.")] = "max",
    n_items: Annotated[int, typer.Option(min=1, help="Catalogue size scored at the last position.")] = 3416,
    max_len: MaxLenOpt = None,
    latency: Annotated[bool, typer.Option(help="Also time the exported model.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """FLOPs (analytic and counted), params of one architecture."""
    report = api.cost(space, arch, n_items=n_items, max_len=max_len, latency=latency)
    if json_out:
        _print_json(report)
        return
    table = Table(title=f"{report['space']['name']}: arch {report['arch_id']}")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("flops (analytic)", f"{report['flops']:,}")
    table.add_row("flops (counted)", f"{report['counted_flops']:,}")
    table.add_row("params", f"{report['params']:,}")
    table.add_row("space flops range", f"{report['space']['min_flops']:,} .. {report['space']['max_flops']:,}")
    for k, v in (report.get("latency_ms") or {}).items():
        table.add_row(f"latency {k} (ms)", f"{v:.2f}")
    console.print(table)


@spaces_app.command("list")
def spaces_list(json_out: JsonOpt = False) -> None:
    """Built-in search spaces."""
    spaces = {name: api.describe_space(name) for name in list_spaces()}
    if json_out:
        _print_json(spaces)
        return
    table = Table()
    for col in ("name", "archs", "flops range (ml-1m items)", "description"):
        table.add_column(col)
    for name, d in spaces.items():
        table.add_row(name, f"{d['n_archs']:,}", f"{d['flops']['min']:.3g} .. {d['flops']['max']:.3g}",
                      d["description"])
    console.print(table)


@spaces_app.command("show")
def spaces_show(
    name: str,
    n_items: Annotated[int, typer.Option(min=1)] = 3416,
    max_len: MaxLenOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """One space: its supernet, choices, number of archs and FLOPs range."""
    d = api.describe_space(name, n_items=n_items, max_len=max_len)
    if json_out:
        _print_json(d)
        return
    console.print(f"[bold]{d['name']}[/bold] ({d['source']}): {d['description']}")
    console.print(f"supernet: {d['supernet']}")
    for k, v in d["choices"].items():
        console.print(f"  {k}: {v}")
    f = d["flops"]
    console.print(f"{d['n_archs']:,} archs; FLOPs at max_len {f['max_len']}, {f['n_items']:,} items: "
                  f"{f['min']:,} .. {f['max']:,}")


@data_app.command("stats")
def data_stats(path: str, format: FormatOpt = "auto", json_out: JsonOpt = False) -> None:
    """Users, items, interactions and length statistics of a dataset."""
    from nasrec.data import dataset_stats

    stats = dataset_stats(api.DataOptions(source=path, format=format).load())
    if json_out:
        _print_json(stats)
        return
    table = Table(title=str(path))
    table.add_column("statistic")
    table.add_column("value", justify="right")
    for k, v in stats.items():
        table.add_row(k, f"{v:,.4g}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
    console.print(table)


@data_app.command("download")
def data_download(
    name: str,
    cache_dir: Annotated[Path | None, typer.Option(help="Default: $NASREC_CACHE or ~/.cache/nasrec.")] = None,
    url: Annotated[str | None, typer.Option(help="Another URL (or file://) of the same archive.")] = None,
    sha256: Annotated[str | None, typer.Option(help="Expected sha256 when --url is another archive.")] = None,
    force: bool = False,
) -> None:
    """Download a public dataset, check its sha256 and convert it for --data."""
    from nasrec.data import download_dataset

    path = download_dataset(name, cache_dir=cache_dir, url=url, sha256=sha256, force=force)
    console.print(f"{name}: {path}  (use --data {path})")


TrackingUriOpt = Annotated[str | None, typer.Option(
    "--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlruns/mlflow.db).")]


@app.command()
def pareto(
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "nasrec",
    tracking_uri: TrackingUriOpt = None,
    metric: Annotated[str, typer.Option(help="NDCG@10 (full ranking) of: test or valid.")] = "test",
    json_out: JsonOpt = False,
) -> None:
    """Pareto front (NDCG@10 up, FLOPs down) over every architecture of an MLflow experiment."""
    from nasrec.tracking import pareto_command

    pareto_command(experiment, tracking_uri, metric, json_out)


@app.command()
def ui(
    tracking_uri: TrackingUriOpt = None,
    host: Annotated[str, typer.Option(help="Interface to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 5000,
) -> None:
    """Serve the MLflow UI on the tracking store until Ctrl-C."""
    from nasrec.ui import ui_command

    ui_command(tracking_uri, host, port)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (`--out` of train or search): the group tested.")],
    baseline: Annotated[list[Path], typer.Option(
        "--baseline", "-b", help="A run directory to compare against; repeat it for a group (e.g. seeds).")],
    metric: Annotated[str, typer.Option(help="recall@K, mrr@K or ndcg@K, full ranking.")] = "ndcg@10",
    resamples: Annotated[int, typer.Option(min=100, help="Bootstrap and sign-flip resamples.")] = 10_000,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="Level of the interval.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Seed of the resampling.")] = 0,
    data: Annotated[str | None, typer.Option(
        "--data", help="The runs' data file, when their config.json's path does not resolve from here.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Paired test of finished runs on the same test users: difference of the means, bootstrap interval,
    sign-flip p-value (each group's per-user mean; models re-scored from RUN/model, full ranking, or, for a run
    without its model files, its saved RUN/test_ranks.json)."""
    from nasrec.compare import RunMetric, compare_runs

    def on_run(run: RunMetric) -> None:
        if not json_out:
            err_console.print(f"scored {run.label}: {run.mean:.4f} (from its {run.source})", highlight=False)

    report = compare_runs(list(runs), list(baseline), metric=metric, resamples=resamples, confidence=confidence,
                          seed=seed, data=data, on_run=on_run)
    if json_out:
        _print_json(report)
        return
    table = Table(title=f"{report['metric']}, {report['data']['name']}, {report['data']['users']:,} users")
    for column in ("group", "run", "arch", "mean"):
        table.add_column(column, justify="right" if column == "mean" else "left")
    for group in ("runs", "baselines"):
        for row in report[group]:
            table.add_row(group[:-1], escape(row["run"]), row["label"], f"{row['mean']:.4f}")
    console.print(table)
    t = report["test"]
    console.print(f"run mean {t['mean_a']:.4f} vs baseline mean {t['mean_b']:.4f}: ratio {report['ratio']:.3f}, "
                  f"difference {t['difference']:+.4f}, {t['confidence']:.0%} interval [{t['ci_low']:+.4f}, "
                  f"{t['ci_high']:+.4f}], sign-flip p = {t['p_value']:.3g} ({t['resamples']:,} resamples, "
                  f"{t['n']:,} users)", highlight=False)


def main() -> None:
    try:
        app()
    except NasrecError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(getattr(exc, "exit_code", 2))


if __name__ == "__main__":
    main()
