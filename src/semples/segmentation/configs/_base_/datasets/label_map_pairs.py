# (image, label map) pairs: a pseudo-mask version to train on, ground truth to validate on. The
# segmentation pipeline fills in `pairs` and `classes`. Augmentation of deeplab-pytorch (used by
# CLIMS and CLIP-ES): a random rescale by one of 0.5..1.5, a random crop (padded with the mean
# and the ignore label by the data preprocessor), a horizontal flip. Whole images at test time.
dataset_type = "LabelMapPairs"
crop_size = (321, 321)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomRescale", ratios=(0.5, 0.75, 1.0, 1.25, 1.5)),
    dict(type="RandomCrop", crop_size=crop_size),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    batch_size=10,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(type=dataset_type, pairs=[], classes=[], pipeline=train_pipeline),
)
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(type=dataset_type, pairs=[], classes=[], pipeline=test_pipeline),
)
test_dataloader = val_dataloader
val_evaluator = dict(type="IoUMetric", iou_metrics=["mIoU"])
test_evaluator = val_evaluator
