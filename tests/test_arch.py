from __future__ import annotations

from pathlib import Path

import pytest

from nasrec.arch import Arch, get_space, list_spaces, load_space_file, parse_arch
from nasrec.errors import ConfigError


def test_builtin_spaces_load_and_count() -> None:
    assert {"tiny", "sasrec-ml1m", "sasrec-gowalla", "canet"} <= set(list_spaces())
    for name in list_spaces():
        space = get_space(name)
        archs = list(space)
        assert len(archs) == len(space)  # the closed-form count agrees with the enumeration
        assert len({a.id for a in archs}) == len(archs)
        for a in archs[:50]:
            assert space.validate(a) is a


def test_sasrec_ml1m_is_the_easrec_setting() -> None:
    space = get_space("sasrec-ml1m")
    assert space.hiddens == (128, 96, 64)
    assert space.inner_widths(128) == (256, 192, 128)
    assert space.depths == (1, 2, 3, 4)
    assert space.max_arch() == Arch(4, 128, (256,) * 4, 128, 4, "softmax")
    assert len(space) == 3 * (3 + 9 + 27 + 81) * 2


def test_canet_space_grid() -> None:
    space = get_space("canet")
    assert len(space) == 3 * 4 * 3  # hidden x depth x embedding
    assert all(a.inner == (2 * a.hidden,) * a.depth for a in space)


def test_arch_json_round_trip_and_stable_id() -> None:
    a = Arch(2, 32, (64, 32), 16, 2, "linear")
    b = Arch.from_json(a.to_json())
    assert a == b and a.id == b.id and hash(a) == hash(b)
    assert Arch(2, 32, (64, 64), 16, 2, "linear").id != a.id


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ('{"depth": 2, "hidden": 32, "inner": [64], "embedding": 32, "heads": 2}', "inner has 1 entries"),
        ('{"depth": 1, "hidden": 30, "inner": [64], "embedding": 32, "heads": 4}', "not divisible"),
        ('{"depth": 1, "hidden": 32, "inner": [64], "embedding": 32, "heads": 2, "x": 1}', "unknown fields"),
        ('{"depth": 1, "hidden": 32', "not valid JSON"),
        ('{"depth": 1, "hidden": 32, "inner": [64], "embedding": 32, "heads": 2, "attention": "x"}', "attention"),
    ],
)
def test_bad_arch_json(payload: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        Arch.from_json(payload)


def test_validate_names_the_field() -> None:
    space = get_space("tiny")
    with pytest.raises(ConfigError, match="hidden=24"):
        space.validate(Arch(1, 24, (32,), 32, 2))
    with pytest.raises(ConfigError, match="depth=3"):
        space.validate(Arch(3, 32, (32,) * 3, 32, 2))
    assert parse_arch("min", space) == space.min_arch()
    with pytest.raises(ConfigError, match="expected max, min"):
        parse_arch("biggest", space)


def test_unknown_space_lists_known() -> None:
    with pytest.raises(ConfigError, match="known: .*tiny"):
        get_space("nope")


GOOD = """
name: mine
supernet: {hidden: 32, inner: 64, embedding: 32, depth: 2, heads: 2, max_len: 10}
choices:
  depth: [1, 2]
  hidden: [32, 16]
  inner: {intensities: [0, 0.5]}
  heads: [2]
"""


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (GOOD.replace("depth: [1, 2]", "depth: [1, 3]"), "depth: 3 is outside"),
        (GOOD.replace("hidden: [32, 16]", "hidden: [32, 48]"), "width 48 is outside"),
        (GOOD.replace("heads: [2]\n", "heads: [3]\n"), "heads"),
        (GOOD.replace("max_len: 10", "max_len: ten"), "supernet.max_len"),
        (GOOD.replace("depth: [1, 2]", "depth: [1, 2]\n  colour: red"), "choices.colour"),
        (GOOD.replace("intensities: [0, 0.5]", "intensities: [0, 1.5]"), "intensity 1.5"),
        (GOOD + "  : [\n", "invalid YAML"),
    ],
)
def test_bad_space_yaml(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=fragment) as info:
        load_space_file(path)
    assert str(path) in str(info.value)


def test_custom_space_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(GOOD)
    space = get_space(str(path))
    assert len(space) == 2 * (2 + 4)
