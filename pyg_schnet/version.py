"""The package's version, in one place: ``setup.cfg`` reads it from here
(``version = attr: pyg_schnet.version.__version__``), ``pyg_schnet`` exports
it and ``pyg-schnet --version`` prints it (:func:`package_version`). A ground
module, so every layer may import it without importing the others."""

__version__ = "0.1.0"


def package_version() -> str:
    """The installed distribution's version (its metadata), else, for a
    source tree that is not installed, :data:`__version__`."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyg_schnet")
    except PackageNotFoundError:
        return __version__
