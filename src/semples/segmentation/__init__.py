"""DeepLabV2 inside MMSegmentation: the last stage of the WSSS pipeline.

Importing the package registers its components in MMSegmentation's registries (the configs
name it in ``custom_imports``).
"""

from semples.segmentation import (  # noqa: F401
    checkpoints,
    datasets,
    deeplabv2_head,
    hooks,
    losses,
    transforms,
)
