# The toy world's DeepLabV2: the same head and recipe shape at the toy's size -- a narrow
# ResNet-18 (output stride 8) trained from random init, so its batch norm trains too; 96 px
# scenes cropped to 64 (as VOC's ~500 px images are cropped to 321); dilations scaled with the
# feature map (12 px here against VOC's 41); 3k iterations at a random-init learning rate.
_base_ = ["deeplabv2_r101-d8_1xb10-20k_voc-321x321.py"]
crop_size = (64, 64)
norm_cfg = dict(type="BN", requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(depth=18, stem_channels=32, base_channels=32, norm_cfg=norm_cfg, norm_eval=False),
    decode_head=dict(in_channels=256, dilations=(2, 4, 6, 8)),
)
train_pipeline = [
    dict(type="LoadImageFromFile"),
    dict(type="LoadAnnotations"),
    dict(type="RandomRescale", ratios=(0.5, 0.75, 1.0, 1.25, 1.5)),
    dict(type="RandomCrop", crop_size=crop_size),
    dict(type="RandomFlip", prob=0.5),
    dict(type="PackSegInputs"),
]
train_dataloader = dict(
    num_workers=0, persistent_workers=False, dataset=dict(pipeline=train_pipeline)
)
val_dataloader = dict(num_workers=0, persistent_workers=False)
test_dataloader = val_dataloader
max_iters = 3000
optim_wrapper = dict(optimizer=dict(lr=1.0e-2))
param_scheduler = [
    dict(type="PolyLR", eta_min=0.0, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(checkpoint=dict(interval=500))
