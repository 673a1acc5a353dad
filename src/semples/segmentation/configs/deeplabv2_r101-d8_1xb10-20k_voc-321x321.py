# DeepLabV2-ResNet-101 on PASCAL VOC pseudo masks: deeplab-pytorch's recipe (crop 321, batch 10,
# 20k iterations, frozen batch norm). Backbone weights: `segmentation.backbone_weights`.
_base_ = [
    "_base_/models/deeplabv2_r101-d8.py",
    "_base_/datasets/label_map_pairs.py",
    "_base_/schedules/deeplab_pytorch_20k.py",
    "_base_/default_runtime.py",
]
crop_size = (321, 321)
model = dict(data_preprocessor=dict(size=crop_size))
