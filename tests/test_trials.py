"""`nasrec.trials`: the checks that run before a trials search opens an MLflow run or starts Ray.
(The trials themselves run in tests/orchestration/test_cli_trials.py, through the CLI over this API.)"""

from __future__ import annotations

import pytest

from nasrec.errors import ConfigError
from nasrec.orchestration import TrialsConfig
from nasrec.search import SearchConfig
from nasrec.trials import resume_trials, start_trials


def test_an_existing_search_is_not_overwritten_and_nothing_is_tracked(synthetic_file, tmp_path):
    out = tmp_path / "search"
    out.mkdir()
    (out / "search.json").write_text("{}")
    store = tmp_path / "mlruns" / "mlflow.db"
    with pytest.raises(ConfigError, match="already holds a search; continue it with --resume"):
        start_trials(str(synthetic_file(n_users=200, n_items=200)),
                     SearchConfig(strategy="random", budget_flops=3e5, max_len=12),
                     TrialsConfig(strategies=("random",), budgets=(3e5,), trials=2), out,
                     tracking_uri=f"sqlite:///{store}")
    assert not store.exists()


def test_resuming_a_directory_without_a_search_names_it(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        resume_trials(tmp_path)
