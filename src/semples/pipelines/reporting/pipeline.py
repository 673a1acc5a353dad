"""reporting: every saved version of each report -> comparison table, the runs grouped by
configuration (ablation table) + plots."""

from kedro.pipeline import Pipeline, node, pipeline

from semples import reporting, viz

# Reports written by the other pipelines, each a versioned JSON in data/08_reporting/. Their
# histories come from the catalog pattern "{report}@history" (the same dataset as the
# "<report>@json" a pipeline writes, transcoded); one not written yet is empty.
REPORTS = ("ingestion_report", "cam_metrics", "pseudo_mask_metrics", "segmentation_metrics")


def create_pipeline(**kwargs) -> Pipeline:
    histories = {report: f"{report}@history" for report in REPORTS}
    return pipeline(
        [
            node(
                reporting.compare_runs,
                inputs={"params": "params:reporting", "run_records": "run_records", **histories},
                outputs="run_comparison",
                name="compare_runs",
            ),
            node(
                viz.plot_headline_across_runs,
                inputs="run_comparison",
                outputs="headline_across_runs_plot",
                name="plot_headline_across_runs",
            ),
            node(
                reporting.tabulate_ablation,
                inputs=["run_comparison", "params:reporting"],
                outputs="ablation_table",
                name="tabulate_ablation",
            ),
            node(
                viz.plot_ablation,
                inputs="ablation_table",
                outputs="ablation_plot",
                name="plot_ablation",
            ),
            node(
                reporting.plot_per_class_latest_runs,
                inputs={"params": "params:reporting", **histories},
                outputs="per_class_latest_runs_plot",
                name="plot_per_class_latest_runs",
            ),
        ]
    )
