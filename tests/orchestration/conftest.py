"""Shared set-up of the orchestration tests: one 2-node Ray cluster on 127.0.0.1 for the whole session.

Starting Ray costs seconds and hundreds of MB; every Ray test shares this one (requested, not autouse, so
tests that need no Ray start none). It is a loopback `ray.cluster_utils.Cluster` with two 1-CPU nodes:
trials spread over both, as on a real cluster, and subprocess drivers join it by its address.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from nasrec import cost
from nasrec.arch import get_space
from nasrec.data import SyntheticConfig, generate_synthetic

HERE = Path(__file__).parent
NODE_OBJECT_STORE = 100 * 1024**2
MAX_LEN = 12


def load_helper() -> ModuleType:
    """`driver_script.py` as a module, pickled by value so Ray workers get its test strategy."""
    name = "nasrec_orchestration_test_helper"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "driver_script.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        import ray.cloudpickle

        ray.cloudpickle.register_pickle_by_value(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def helper() -> ModuleType:
    return load_helper()


@pytest.fixture
def quick_strategy(helper) -> Any:
    """The test-only strategy, registered for one test and removed after (other tests list strategies)."""
    from nasrec.strategies import base

    base.list_strategies()  # discover the real ones first
    base.register_strategy(helper.QuickTest)
    yield helper.QuickTest
    base._REGISTRY.pop(helper.QuickTest.name, None)


@pytest.fixture(scope="session")
def ray_cluster():
    """Two 1-CPU nodes on 127.0.0.1, this process connected as a driver; yields the cluster's address."""
    import ray
    from ray.cluster_utils import Cluster

    from nasrec.orchestration import loopback_only

    assert not ray.is_initialized()
    with loopback_only():
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                                "object_store_memory": NODE_OBJECT_STORE})
        try:
            cluster.add_node(num_cpus=1, object_store_memory=NODE_OBJECT_STORE)
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
        except BaseException:
            cluster.shutdown()
            raise
    try:
        yield cluster.address
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="session")
def data_file(tmp_path_factory) -> str:
    """200 users x 200 items in the `lines` format (the sampled protocols need 100 negatives per user)."""
    data = generate_synthetic(SyntheticConfig(n_users=200, n_items=200, mean_len=12, seed=0))
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    path.write_text("".join(f"{u} {' '.join(map(str, s.tolist()))}\n"
                            for u, s in zip(data.user_ids, data.sequences, strict=True)))
    return str(path)


@pytest.fixture(scope="session")
def budget(data_file) -> float:
    """Halfway between the smallest and the largest arch of the tiny space."""
    from nasrec.api import DataOptions

    rng = cost.flops_range(get_space("tiny"), DataOptions(source=data_file).load().n_items, MAX_LEN)
    return rng.min_flops + 0.5 * (rng.max_flops - rng.min_flops)


class FakeTracker:
    """The tracker interface, in memory."""

    def __init__(self) -> None:
        self.ok: dict[str, dict[str, Any]] = {}
        self.failed: dict[str, dict[str, Any]] = {}
        self.calls = 0

    def logged_trials(self) -> set[str]:
        return set(self.ok) | set(self.failed)

    def log_trial(self, trial_id: str, config: dict, result: dict, run_dir: Path) -> str:
        self.calls += 1
        assert trial_id not in self.ok, f"trial {trial_id} logged twice"
        self.ok[trial_id] = {"config": config, "result": result, "run_dir": Path(run_dir)}
        return trial_id

    def log_failed_trial(self, trial_id: str, config: dict, error: str) -> str:
        self.calls += 1
        assert trial_id not in self.failed, f"trial {trial_id} logged twice"
        self.failed[trial_id] = {"config": config, "error": error}
        return trial_id


@pytest.fixture
def tracker() -> FakeTracker:
    return FakeTracker()
