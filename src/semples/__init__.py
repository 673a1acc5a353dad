"""semples: SemPLES weakly-supervised semantic segmentation as a Kedro project."""

from semples import compat  # noqa: F401  (must run before torchvision / mmseg are imported)

__version__ = "0.1.0"
