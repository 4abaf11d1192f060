"""The package's version, in one place: ``setup.cfg`` reads it from here
(``version = attr: pyg_schnet.version.__version__``), ``pyg_schnet`` exports
it and ``pyg-schnet --version`` prints it (:func:`package_version`). A ground
module, so every layer may import it without importing the others."""

import functools
import os.path as osp
import subprocess

__version__ = "0.1.0"


def package_version() -> str:
    """The installed distribution's version (its metadata), else, for a
    source tree that is not installed, :data:`__version__`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyg_schnet")
    except PackageNotFoundError:
        return __version__


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """The code that is running, as a run records it (``metrics.json``'s
    ``code``): :data:`__version__`, and where this package is the
    ``pyg_schnet`` folder of a git checkout, ``+g`` and the checkout's commit
    (12 hex digits), with ``.dirty`` when the package's files differ from that
    commit. An installed copy (or no git) gives the version alone."""
    here = osp.dirname(osp.realpath(__file__))

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", "-C", here, *args], capture_output=True, text=True, timeout=30, check=True
        )
        return out.stdout.strip()

    try:
        if osp.realpath(osp.join(git("rev-parse", "--show-toplevel"), "pyg_schnet")) != here:
            return __version__  # e.g. a copy installed in a virtual environment inside a checkout
        commit = git("rev-parse", "--short=12", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", here)
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"
