"""Review of the runtimes: failure paths that must end in a ProvisionError with a hint, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from provisioner.errors import EnvironmentProblem
from provisioner.runtime.base import SubprocessRunner


def test_a_program_that_cannot_be_executed_is_an_environment_problem(tmp_path: Path) -> None:
    program = tmp_path / "java"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o644)  # present but not executable: PermissionError, not FileNotFoundError
    with pytest.raises(EnvironmentProblem) as caught:
        SubprocessRunner().run([str(program), "-version"], timeout_s=5)
    assert f"`{program}` cannot be run" in caught.value.message
    assert "--runtime" in (caught.value.hint or "")


def test_a_timeout_names_the_whole_command() -> None:
    args = [sys.executable, "-c", "import time; time.sleep(30)", "up", "--wait"]
    with pytest.raises(EnvironmentProblem) as caught:
        SubprocessRunner().run(args, timeout_s=0.2)
    # The sub-command (for compose it comes after the project, file and env-file options) is named.
    assert "up --wait" in caught.value.message and "did not finish within 0 s" in caught.value.message
