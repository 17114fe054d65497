"""Keep the test session's side effects inside temporary directories.

edgeode caches per-machine measurements (the host's reference SGEMM throughput, see
edgeode.devices.hostinfo.host_reference) in the user's cache directory and reads user device
profiles from ~/.config/edgeode/devices. Tests point both at a temporary directory made for the
session (subprocesses inherit the environment), so running the suite writes nothing into the home
directory and no profile a user saved changes a test's outcome.
"""

from __future__ import annotations

import os
import shutil
import tempfile

_SESSION_DIR: str | None = None


def pytest_configure(config) -> None:
    global _SESSION_DIR
    _SESSION_DIR = tempfile.mkdtemp(prefix="edgeode-tests-")
    os.environ.setdefault("EDGEODE_CACHE_DIR", os.path.join(_SESSION_DIR, "cache"))
    os.environ.setdefault("EDGEODE_DEVICES_DIR", os.path.join(_SESSION_DIR, "devices"))


def pytest_unconfigure(config) -> None:
    if _SESSION_DIR is not None:
        shutil.rmtree(_SESSION_DIR, ignore_errors=True)
