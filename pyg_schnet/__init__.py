"""SchNet with swappable edge filters on PyTorch Geometric, trained on QM9."""

__version__ = "0.1.0"
