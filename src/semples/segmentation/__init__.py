"""DeepLabV2 inside MMSegmentation: the last stage of the WSSS pipeline."""
