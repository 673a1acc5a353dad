"""Networks: mask generators (CAM networks) for SemPLES."""

from semples.models.cam_networks import (
    DeiTSmallCam,
    MaskGenerator,
    ResNet50Cam,
    SmallFcnCam,
    build_mask_generator,
    inference_cams,
    load_generator_weights,
    masks_for_pairs,
)

__all__ = [
    "DeiTSmallCam",
    "MaskGenerator",
    "ResNet50Cam",
    "SmallFcnCam",
    "build_mask_generator",
    "inference_cams",
    "load_generator_weights",
    "masks_for_pairs",
]
