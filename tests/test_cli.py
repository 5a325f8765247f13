"""The `nasrec` command: bad input gives exit code 2 and one line naming the problem, before any
training; the read-only commands and a tiny `nasrec train` work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run_main
from typer.testing import CliRunner

from nasrec import cli
from nasrec.errors import NasrecError

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def data_file(synthetic_file) -> Path:
    return synthetic_file(n_users=150, n_items=200, mean_len=10, seed=2)


# --- bad input ------------------------------------------------------------------------------------

SEARCH = ["search", "--budget-flops", "3e5", "--search-epochs", "1", "--retrain-epochs", "1",
          "--max-len", "12", "--batch-size", "64"]


def bad_files(tmp: Path) -> dict[str, Path]:
    (tmp / "empty.txt").write_text("")
    (tmp / "blank.txt").write_text("\n  \n")
    (tmp / "malformed.txt").write_text("1 5 6 7\n2 5 x 7\n3 5 6 7\n")
    (tmp / "few-items.txt").write_text("".join(f"{u} {u % 20 + 1} {(u + 3) % 20 + 1} {(u + 7) % 20 + 1}\n"
                                               for u in range(1, 41)))
    names = ("empty", "blank", "malformed", "few-items", "missing")
    return {**{name: tmp / f"{name}.txt" for name in names}, "directory": tmp}


# (id, argv with {data}, {bad:NAME} placeholders, substrings of the message)
CASES = [
    ("unknown-strategy", [*SEARCH, "--strategy", "nope", "--data", "{data}"], ["nope", "darts", "random"]),
    ("unknown-space", [*SEARCH, "--space", "nope", "--data", "{data}"], ["unknown search space", "tiny"]),
    ("unknown-set-key", [*SEARCH, "--strategy", "darts", "--set", "foo=1", "--data", "{data}"],
     ["foo", "arch_lr"]),
    ("set-out-of-range", [*SEARCH, "--strategy", "darts", "--set", "arch_lr=5", "--data", "{data}"],
     ["arch_lr", "range"]),
    ("set-not-numeric", [*SEARCH, "--strategy", "random", "--set", "n_candidates=many", "--data", "{data}"],
     ["n_candidates", "int"]),
    ("set-not-key-value", [*SEARCH, "--set", "arch_lr", "--data", "{data}"], ["key=value"]),
    ("set-comma-not-key-value", [*SEARCH, "--set", "arch_lr=0.01,warmup", "--data", "{data}"],
     ["key=value", "'warmup'"]),
    ("set-comma-second-out-of-range", [*SEARCH, "--strategy", "darts", "--set", "warmup_epochs=0,arch_lr=5",
                                       "--data", "{data}"], ["arch_lr", "range"]),
    ("set-key-twice", [*SEARCH, "--set", "arch_lr=0.01", "--set", "arch_lr=0.02", "--data", "{data}"],
     ["arch_lr", "twice"]),
    ("budget-below-min", [*SEARCH[:1], "--budget-flops", "1000", "--data", "{data}"],
     ["below the smallest arch", "FLOPs"]),
    ("budget-missing", ["search", "--data", "{data}"], ["--budget-flops"]),
    ("max-len-too-long", [*SEARCH[:-4], "--max-len", "999", "--data", "{data}"], ["--max-len", "999", "20"]),
    ("empty-data", [*SEARCH, "--data", "{bad:empty}"], ["empty.txt", "empty"]),
    ("blank-data", [*SEARCH, "--data", "{bad:blank}"], ["blank.txt", "empty"]),
    ("missing-data", [*SEARCH, "--data", "{bad:missing}"], ["missing.txt", "no such file"]),
    ("directory-data", ["data", "stats", "{bad:directory}"], ["not a regular file"]),
    ("malformed-line", [*SEARCH, "--data", "{bad:malformed}"], ["malformed.txt:2", "'2 5 x 7'"]),
    ("catalogue-too-small", [*SEARCH, "--data", "{bad:few-items}"], ["sampled", "100 negatives"]),
    ("malformed-line-train", ["train", "--epochs", "1", "--data", "{bad:malformed}"], ["malformed.txt:2"]),
    ("arch-not-in-space",
     ["train", "--epochs", "1", "--data", "{data}", "--arch",
      '{"depth": 3, "hidden": 32, "inner": 64, "embedding": 32, "heads": 2}'], ["not in space", "depth=3"]),
    ("arch-not-json", ["train", "--epochs", "1", "--data", "{data}", "--arch", "biggest"], ["--arch", "biggest"]),
    ("time-budget-not-positive", ["train", "--data", "{data}", "--max-minutes", "0"], ["--max-minutes", "> 0"]),
    ("unknown-lr-schedule", ["train", "--data", "{data}", "--lr-schedule", "step"],
     ["--lr-schedule", "constant, linear, cosine", "'step'"]),
    ("warmup-not-below-epochs", ["train", "--epochs", "2", "--warmup-epochs", "2", "--data", "{data}"],
     ["--warmup-epochs", "--epochs", "got 2"]),
    ("min-epochs-above-epochs-train", ["train", "--epochs", "3", "--min-epochs", "5", "--data", "{data}"],
     ["--min-epochs", "--epochs", "got 5"]),
    ("min-epochs-above-epochs-search", [*SEARCH, "--retrain-epochs", "3", "--min-epochs", "5", "--data", "{data}"],
     ["--min-epochs", "--retrain-epochs"]),
    ("projection-fill-out-of-range", [*SEARCH, "--data", "{data}", "--projection-fill", "1.5"],
     ["--projection-fill", "between 0 and 1", "1.5"]),
    ("unknown-format", ["data", "stats", "{data}", "--format", "xml"], ["xml"]),
    ("unknown-device-train", ["train", "--epochs", "1", "--data", "{data}", "--device", "tpu"],
     ["--device 'tpu'", "auto, cpu, cuda"]),
    ("unknown-device-search", [*SEARCH, "--data", "{data}", "--device", "tpu"], ["--device 'tpu'"]),
    ("resume-not-a-search", [*SEARCH, "--data", "{data}", "--resume", "{bad:directory}"],
     ["--resume", "no earlier `nasrec search` run"]),
]


def fill(argv: list[str], data_file: Path, files: dict[str, Path], out: Path) -> list[str]:
    filled = []
    for arg in argv:
        if arg == "{data}":
            arg = str(data_file)
        elif arg.startswith("{bad:"):
            arg = str(files[arg[5:-1]])
        filled.append(arg)
    if filled[0] in {"search", "train"}:
        filled += ["--out", str(out)]
    return filled


@pytest.mark.parametrize("argv,needles", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_before_training(argv, needles, data_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = fill(argv, data_file, bad_files(tmp_path), out)

    # Through the Typer app: the NasrecError reaches the caller (no SystemExit from a crash elsewhere).
    result = runner.invoke(cli.app, args)
    assert isinstance(result.exception, NasrecError), (result.output, result.exception)
    for needle in needles:
        assert needle in str(result.exception)

    # Through the console-script function: exit code 2, one line on stderr, no traceback.
    code, _, err = run_main(args, capsys, monkeypatch)
    assert_one_line_error(code, err, *needles)
    assert not out.exists()  # nothing was trained or written


def test_error_message_is_printed_verbatim(tmp_path, capsys, monkeypatch):
    bad = tmp_path / "brackets.txt"
    bad.write_text("1 5 6 7\n[/x] 5 6\n")
    code, _, err = run_main(["data", "stats", str(bad)], capsys, monkeypatch)
    assert_one_line_error(code, err, "brackets.txt:2", "[/x]")


def test_set_pairs_repeated_or_comma_separated_are_the_same():
    repeated = cli._parse_sets(["lam=0", "weight_step=sandwich", "estimator=pair_loss"])
    assert cli._parse_sets(["lam=0,weight_step=sandwich", "estimator=pair_loss"]) == repeated
    assert cli._parse_sets([" lam = 0 , weight_step=sandwich,estimator=pair_loss"]) == repeated
    assert repeated == {"lam": "0", "weight_step": "sandwich", "estimator": "pair_loss"}


def test_no_declared_choice_contains_the_set_separator():
    """`--set a=1,b=2` splits on commas, so no categorical value of any strategy may hold one."""
    from nasrec.strategies.base import list_strategies

    values = [str(choice) for cls in list_strategies().values() for p in cls.hyperparams for choice in p.choices or ()]
    assert values, "no categorical hyper-parameters found: the check would pass vacuously"
    assert not [v for v in values if "," in v]


ENTRY_CASES = [
    (["search", "--strategy", "nope", "--budget-flops", "3e5"], ["unknown strategy 'nope'", "darts"]),
    (["data", "stats", "{bad:malformed}"], ["malformed.txt:2"]),
]


@pytest.mark.parametrize("argv,needles", ENTRY_CASES, ids=["unknown-strategy", "malformed-line"])
def test_real_entry_point_exit_code(argv, needles, data_file, tmp_path):
    """The installed command (`python -m nasrec.cli` runs the same `main`) in a fresh process."""
    args = fill(argv, data_file, bad_files(tmp_path), tmp_path / "out")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.run([sys.executable, "-m", "nasrec.cli", *args], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert_one_line_error(proc.returncode, proc.stderr, *needles)
    assert not (tmp_path / "out").exists()


# --- happy paths ----------------------------------------------------------------------------------


def invoke_json(args: list[str]):
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_strategies_json_lists_hyperparams():
    described = invoke_json(["strategies", "--json"])
    assert {"darts", "random"} <= set(described)
    random_params = {p["name"]: p for p in described["random"]["hyperparams"]}
    assert random_params["n_candidates"]["default"] == 8
    assert (random_params["n_candidates"]["low"], random_params["n_candidates"]["high"]) == (1, 1000)
    assert "epochs_per_candidate" in random_params
    assert "arch_lr" in {p["name"] for p in described["darts"]["hyperparams"]}
    for d in described.values():
        assert d["summary"]

    table = runner.invoke(cli.app, ["strategies"])
    assert table.exit_code == 0 and "random" in table.stdout and "n_candidates" in table.stdout


def test_spaces_list_and_show():
    listed = runner.invoke(cli.app, ["spaces", "list"])
    assert listed.exit_code == 0 and "tiny" in listed.stdout
    shown = invoke_json(["spaces", "show", "tiny", "--json"])
    assert shown["name"] == "tiny" and shown["n_archs"] == 24
    assert 0 < shown["flops"]["min"] < shown["flops"]["max"]


def test_cost_json_counted_equals_analytic():
    report = invoke_json(["cost", "--space", "tiny", "--arch", "max", "--json"])
    assert report["flops"] == report["counted_flops"] > 0
    assert report["params"] > 0
    assert report["space"]["min_flops"] <= report["flops"] == report["space"]["max_flops"]


def test_data_stats_json(data_file):
    stats = invoke_json(["data", "stats", str(data_file), "--json"])
    assert stats["users"] == 150
    assert stats["items"] <= 200 and stats["interactions"] > 150 * 3


def test_tiny_train_writes_result(data_file, tmp_path):
    out = tmp_path / "train"
    result = runner.invoke(cli.app, ["train", "--data", str(data_file), "--space", "tiny", "--arch", "min",
                                     "--epochs", "1", "--max-len", "12", "--batch-size", "64", "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    written = json.loads((out / "result.json").read_text())
    assert written["train"]["epochs_run"] == 1
    assert written["max_len"] == 12
    for protocol in ("full", "uni100", "pop100"):
        assert 0.0 <= written["metrics"]["test"][protocol]["ndcg@10"] <= 1.0
    assert (out / "model").is_dir()
