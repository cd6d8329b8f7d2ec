"""`make test` runs two layers (tests/layers.py): a -m expression narrows both, and nothing else is lost."""

from __future__ import annotations

import sys

from tests.layers import layer_commands, split_marker


def test_without_a_marker_the_parallel_layer_takes_all_but_the_browsers_and_the_second_takes_them() -> None:
    parallel, browsers = layer_commands(["tests/api", "-k", "join"], workers=4)
    assert parallel == [sys.executable, "-m", "pytest", "-n", "4", "-m", "not e2e", "tests/api", "-k", "join"]
    assert browsers == [sys.executable, "-m", "pytest", "-m", "e2e", "tests/api", "-k", "join"]


def test_a_marker_expression_narrows_both_layers_and_the_last_one_wins_as_in_pytest() -> None:
    parallel, browsers = layer_commands(["-m", "redis", "-x", "-mnginx or redis"], workers=2)
    assert parallel[-3:] == ["-m", "not e2e and (nginx or redis)", "-x"]
    assert browsers[-3:] == ["-m", "e2e and (nginx or redis)", "-x"]


def test_one_worker_runs_the_first_layer_without_xdist() -> None:
    parallel, _ = layer_commands([], workers=1)
    assert "-n" not in parallel


def test_split_marker_leaves_other_options_alone() -> None:
    assert split_marker(["-ra", "--maxfail=2", "tests"]) == (["-ra", "--maxfail=2", "tests"], None)
