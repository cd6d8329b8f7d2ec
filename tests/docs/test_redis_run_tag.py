"""Each test process has its own Redis tag (tests/conftest.py): a pytest-xdist worker's end-of-session sweep deletes
only the keys it wrote, never those of a test still running on the other worker."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import tests.conftest
from tests.conftest import RUN_TAG
from tests.procs import ROOT


def test_the_tag_names_this_process_and_a_second_import_of_the_conftest_agrees() -> None:
    assert RUN_TAG.startswith(f"test-{os.getpid()}-")
    spec = importlib.util.spec_from_file_location("conftest_again", tests.conftest.__file__)
    assert spec is not None and spec.loader is not None
    again = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(again)
    assert again.RUN_TAG == RUN_TAG


def test_a_child_process_that_inherits_the_environment_gets_a_tag_of_its_own() -> None:
    """xdist workers are children of the controller, which imported the conftest (and set the environment) first."""
    assert os.environ["CONFERENCE_TEST_RUN"] == RUN_TAG
    child = subprocess.run(
        [sys.executable, "-c", "import os; from tests.conftest import RUN_TAG; print(os.getpid(), RUN_TAG)"],
        cwd=ROOT,
        env=os.environ,
        capture_output=True,
        text=True,
        check=True,
    )
    pid, tag = child.stdout.split()
    assert tag.startswith(f"test-{pid}-")
    assert not tag.startswith(RUN_TAG) and not RUN_TAG.startswith(tag)
