# deeplab-pytorch's DeepLabV2 recipe (METHOD.md): SGD momentum 0.9, lr 2.5e-4, the head's weights
# at 10x and its biases at 20x without weight decay, weight decay 5e-4, poly decay 0.9 over 20k
# iterations. One key per head branch: MMEngine matches the longest key first, so a plain
# "bias" key would lose to "decode_head" (DeepLabV2Head has four branches).
max_iters = 20000
optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="SGD", lr=2.5e-4, momentum=0.9, weight_decay=5e-4),
    paramwise_cfg=dict(
        custom_keys={
            "decode_head": dict(lr_mult=10.0),
            **{
                f"decode_head.branches.{i}.bias": dict(lr_mult=20.0, decay_mult=0.0)
                for i in range(4)
            },
        }
    ),
)
param_scheduler = [
    dict(type="PolyLR", eta_min=0.0, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=2000)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(
        type="CheckpointHook", by_epoch=False, interval=2000, max_keep_ckpts=1, save_last=True
    ),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
