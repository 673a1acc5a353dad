"""ingestion: dataset files -> validated image index -> ingestion report."""

from kedro.pipeline import Pipeline, node, pipeline

from semples.data import ingest


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                ingest.dataset_files,
                inputs="params:ingestion",
                outputs=[
                    "generated_images",
                    "generated_masks",
                    "generated_context_masks",
                    "generated_annotations",
                ],
                name="generate_dataset_files",
            ),
            node(
                ingest.index_dataset,
                inputs=[
                    "generated_images",
                    "generated_masks",
                    "generated_context_masks",
                    "generated_annotations",
                    "params:ingestion",
                ],
                outputs=["image_index", "caption_index", "dataset_classes", "skipped_items"],
                name="build_image_index",
            ),
            node(
                ingest.report_ingestion,
                inputs=["image_index", "dataset_classes", "skipped_items", "params:ingestion"],
                outputs="ingestion_report@json",
                name="report_ingestion",
            ),
        ]
    )
