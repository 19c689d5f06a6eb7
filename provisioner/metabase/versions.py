"""The Metabase versions this tool supports, in one place (README and the e2e matrix quote it)."""

from __future__ import annotations

import re

from pydantic import BaseModel

from provisioner.errors import MetabaseVersionError

# Current release plus the four before it (Metabase 65 is the newest, Nov 2026).
MIN_SUPPORTED_MAJOR = 61
MAX_TESTED_MAJOR = 65
SUPPORTED_RANGE = f"{MIN_SUPPORTED_MAJOR}–{MAX_TESTED_MAJOR}"

# OSS tags are v0.NN.P, Enterprise v1.NN.P; patch builds add a fourth part (v0.64.2.2).
_TAG = re.compile(r"^v?[01]\.(\d+)(?:\.\d+)*")


class VersionCheck(BaseModel):
    """Outcome of checking a Metabase version against the supported range."""

    tag: str
    major: int | None
    supported: bool
    warning: str | None = None


def parse_major(tag: str | None) -> int | None:
    """The major version of a tag (65 for "v0.65.4" or "v1.65.4"); None when it is not a release tag."""
    match = _TAG.match(tag or "")
    return int(match.group(1)) if match else None


def check_version(tag: str | None) -> VersionCheck:
    """Whether `tag` is supported; raises MetabaseVersionError below the range, warns above it."""
    shown = tag or "unknown"
    major = parse_major(tag)
    if major is None:
        return VersionCheck(
            tag=shown,
            major=None,
            supported=True,
            warning=f"cannot read a release number from Metabase version {shown!r}; "
            f"this tool is tested with Metabase {SUPPORTED_RANGE}",
        )
    if major < MIN_SUPPORTED_MAJOR:
        raise MetabaseVersionError(
            f"Metabase {shown} (major {major}) is too old: supported versions are {SUPPORTED_RANGE}",
            hint=f"upgrade Metabase to version {MIN_SUPPORTED_MAJOR} or newer "
            f"(e.g. the image metabase/metabase:v0.{MAX_TESTED_MAJOR}.x)",
        )
    if major > MAX_TESTED_MAJOR:
        return VersionCheck(
            tag=shown,
            major=major,
            supported=True,
            warning=f"Metabase {shown} is newer than tested (tested: {SUPPORTED_RANGE}); proceeding",
        )
    return VersionCheck(tag=shown, major=major, supported=True)
