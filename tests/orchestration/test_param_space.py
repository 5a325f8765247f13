"""Every configuration a trial can be given is one the strategy accepts (no cross-parameter clash)."""

from __future__ import annotations

import optuna
import pytest

from nasrec.orchestration import param_space
from nasrec.strategies.base import create_strategy, list_strategies


@pytest.mark.parametrize("name", list(list_strategies()))
def test_sampled_configurations_are_valid(name: str) -> None:
    space = param_space(name)
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    for _ in range(200):
        trial = study.ask(space)
        params = {k: v for k, v in trial.params.items() if k != "lr"}
        create_strategy(name, params)  # raises ConfigError on an invalid combination
        study.tell(trial, 0.0)


def test_effort_knobs_are_not_tuned() -> None:
    assert "n_candidates" not in param_space("random")
    assert "n_trials" not in param_space("optuna")
    assert "search_patience" not in param_space("easrec")
    assert param_space("darts")["warmup_epochs"].high <= 2  # the tuning range, not the validity range
