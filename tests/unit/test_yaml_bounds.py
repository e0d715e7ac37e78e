"""The bounds of a config document: its size, and what its aliases expand it to."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from gateway.config.common import read_root
from gateway.config.yaml_source import (
    MAX_CONFIG_BYTES,
    MAX_EXPANDED_NODES,
    expansion_problem,
    load_located,
    read_source,
)


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """`levels` anchors, each a list of `width` aliases of the one before: width**levels."""
    lines = ["version: 1", "x0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    lines += [f"x{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]"
              for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_any_value_is_built() -> None:
    started = time.monotonic()
    root, errors = load_located(alias_bomb())
    assert time.monotonic() - started < 1.0
    assert root is None
    [error] = errors
    assert "aliases expand the document to more than 100000 values" in error.message
    assert error.line is not None and 2 < error.line <= 11


def test_a_bomb_as_a_mapping_key_is_refused_too() -> None:
    text = alias_bomb() + "? *a9\n: 1\n"
    root, errors = load_located(text)
    assert root is None and "alias" in errors[0].message


def test_aliases_within_the_bound_are_read_as_before() -> None:
    root, errors = load_located(alias_bomb(levels=3, width=3))  # 3**3 leaves
    assert errors == [] and root is not None
    assert [leaf.value for leaf in root.value["x1"].value[0].value] == ["lol"] * 3


def test_a_recursive_alias_is_a_problem_not_a_crash() -> None:
    root, errors = load_located("version: 1\nx: &a [1, *a]\n")
    assert root is None and "refers to a value that contains it" in errors[0].message


def test_the_count_is_exact_at_the_bound() -> None:
    node = yaml.compose("[" + ", ".join(["x"] * (MAX_EXPANDED_NODES - 1)) + "]")
    assert node is not None
    assert expansion_problem(node, MAX_EXPANDED_NODES) is None
    assert expansion_problem(node, MAX_EXPANDED_NODES - 1) is not None


def test_a_file_over_the_size_bound_is_refused_unparsed(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"version: 1\n# " + "é".encode() * MAX_CONFIG_BYTES + b"\n")
    assert len(read_source(path).encode()) > MAX_CONFIG_BYTES
    reader, problems = read_root(path)
    assert reader is None
    assert [str(p) for p in problems] == [
        f"{path}: (top level): expected valid YAML; found the file is larger than "
        f"{MAX_CONFIG_BYTES} bytes, the most a config may have"]


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_a_long_file_cut_inside_a_character_stays_over_the_bound(tmp_path: Path,
                                                                 cut: int) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_CONFIG_BYTES - cut) + "€".encode() * 4)
    assert len(read_source(path).encode()) > MAX_CONFIG_BYTES
