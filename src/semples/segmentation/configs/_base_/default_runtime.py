# MMEngine runtime: the mmseg registry scope, seeded, logs by iteration, scalars to
# <work_dir>/<timestamp>/vis_data/scalars.json (the pipeline turns them into a loss history).
default_scope = "mmseg"
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)
vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="Visualizer", vis_backends=vis_backends)  # named after the run (unique)
log_processor = dict(by_epoch=False)
log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0)
custom_hooks = [
    dict(type="FiniteLossHook"),
    dict(type="PlainCheckpointHook"),
]  # see semples.segmentation
