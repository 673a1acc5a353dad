"""The reporting pipeline in process, over report histories held in memory."""

from kedro.io import MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure

from catalogs import keeping_catalog
from semples.pipelines.reporting import create_pipeline
from semples.pipelines.reporting.pipeline import REPORTS

PARAMS = {
    "reports": {
        "ingestion_report": {"headline": "num_images", "per_class": "class_frequency"},
        "cam_metrics": {
            "headline": "miou",
            "per_class": "per_class_iou",
            "columns": {"stage1_miou": "stages.stage1.miou"},
        },
        "pseudo_mask_metrics": {"headline": "miou", "per_class": "per_class_iou"},
        "segmentation_metrics": {"headline": "miou", "per_class": "per_class_iou"},
    },
    "per_class_runs": 2,
    "ablation": {"reports": ["cam_metrics", "pseudo_mask_metrics", "segmentation_metrics"]},
}


def cam_report(miou: float, lam: float, seed: int = 0) -> dict:
    return {
        "miou": miou,
        "per_class_iou": {"background": 0.8, "boat": miou},
        "stages": {"stage1": {"miou": miou - 0.1}},
        "split": "val",
        "num_images": 10,
        "params": {"seed": seed, "stage3": {"lambda": lam}},
    }


def test_compares_runs_of_every_report_that_exists():
    histories = {f"{name}@history": MemoryDataset({}) for name in REPORTS}
    histories["cam_metrics@history"] = MemoryDataset(
        {"2026-01-01T00.00.00.000Z": cam_report(0.40, 0.05),
         "2026-01-02T00.00.00.000Z": cam_report(0.46, 2.0),
         "2026-01-03T00.00.00.000Z": cam_report(0.50, 2.0, seed=1)}
    )  # fmt: skip
    # the first run finished, the second was killed (its process is gone), the third unrecorded
    records = {
        "2026-01-01T00.00.00.000Z": {"status": "finished"},
        "2026-01-02T00.00.00.000Z": {"status": "running", "pid": -1, "host": "elsewhere"},
    }
    catalog = keeping_catalog(
        {"params:reporting": MemoryDataset(PARAMS), "run_records": MemoryDataset(records),
         **histories},
        keep=[
            "run_comparison",
            "headline_across_runs_plot",
            "per_class_latest_runs_plot",
            "ablation_table",
            "ablation_plot",
        ],
    )

    SequentialRunner().run(create_pipeline(), catalog)

    table = catalog.load("run_comparison")
    assert table["report"].tolist() == ["cam_metrics"] * 3
    assert table["status"].tolist() == ["finished", "did not finish", "unrecorded"]
    assert table["delta"].round(6).tolist()[1] == 0.06
    assert table["params.stage3.lambda"].tolist() == [0.05, 2.0, 2.0]
    assert table["stage1_miou"].round(6).tolist() == [0.3, 0.36, 0.4]
    ablation = catalog.load("ablation_table")
    assert ablation["configuration"].tolist() == ["stage3.lambda=0.05", "stage3.lambda=2"]
    assert ablation["n"].tolist() == [1, 2] and ablation["seeds"].tolist() == ["[0]", "[0, 1]"]
    assert ablation["value_mean"].round(6).tolist() == [0.40, 0.48]
    assert isinstance(catalog.load("ablation_plot"), Figure)
    assert isinstance(catalog.load("headline_across_runs_plot"), Figure)
    per_class = catalog.load("per_class_latest_runs_plot")
    assert [ax.get_title() for ax in per_class.axes if ax.get_title()] == ["cam_metrics"]
