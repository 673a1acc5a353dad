# DeepLabV2: dilated ResNet-101 (output stride 8) + four dilated 3x3 branches summed to the logits.
# Frozen batch norm, as deeplab-pytorch trains it. Weights: set by the pipeline from a local
# ImageNet or COCO-pretrained checkpoint (the backbone's init_cfg); none = random init (toy).
# custom_imports registers the head, dataset, transform, loss and hook of semples.segmentation.
custom_imports = dict(imports=["semples.segmentation"], allow_failed_imports=False)
norm_cfg = dict(type="BN", requires_grad=False)
data_preprocessor = dict(
    type="SegDataPreProcessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255,
)
model = dict(
    type="EncoderDecoder",
    data_preprocessor=data_preprocessor,
    pretrained=None,
    backbone=dict(
        type="ResNet",
        depth=101,
        num_stages=4,
        out_indices=(3,),
        strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4),
        norm_cfg=norm_cfg,
        norm_eval=True,
        contract_dilation=True,
        style="pytorch",
    ),
    decode_head=dict(
        type="DeepLabV2Head",
        in_channels=2048,
        in_index=0,
        num_classes=21,
        dilations=(6, 12, 18, 24),
        align_corners=False,
        loss_decode=dict(
            type="CrossEntropyLoss", use_sigmoid=False, loss_weight=1.0, avg_non_ignore=True
        ),
    ),
    train_cfg=dict(),
    test_cfg=dict(mode="whole"),
)
