"""The CLI's trials path: `nasrec search --trials N` on Ray, logged to MLflow, then `--resume`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from nasrec import cli

runner = CliRunner()


def test_cli_trials_log_to_mlflow_print_the_front_and_resume(ray_cluster, data_file, budget, tmp_path: Path) -> None:
    out = tmp_path / "search"
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    args = ["search", "--strategy", "random", "--set", "n_candidates=2", "--budget-flops", f"{budget:.0f}",
            "--trials", "2", "--space", "tiny", "--max-len", "12", "--retrain-epochs", "1", "--batch-size", "64",
            "--address", ray_cluster, "--tracking-uri", uri, "--out", str(out)]
    result = runner.invoke(cli.app, args)
    assert result.exit_code == 0, (result.output, result.exception)
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "Pareto front" in text and "nasrec ui --tracking-uri" in text
    assert text.count(": ok ") == 2

    from nasrec.tracking import SearchTracker, experiment_front

    front = experiment_front(uri)
    assert front and all(row["flops"] <= budget for row in front)

    resumed = runner.invoke(cli.app, ["search", "--resume", str(out), "--address", ray_cluster])
    assert resumed.exit_code == 0, (resumed.output, resumed.exception)
    assert "2 trials already logged" in " ".join(resumed.output.split())
    parent = SearchTracker(uri).client.search_runs(
        [SearchTracker(uri).client.get_experiment_by_name("nasrec").experiment_id],
        filter_string="tags.mlflow.parentRunId != ''")
    assert len({r.data.tags.get("nasrec.trial_id") for r in parent}) == len(parent) == 2  # no duplicates
