"""ingestion: dataset files -> validated image index -> ingestion report."""

from kedro.pipeline import Pipeline, node, pipeline

from semples.pipelines.ingestion import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                nodes.generate_dataset_files,
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
                nodes.build_image_index,
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
                nodes.report_ingestion,
                inputs=["image_index", "dataset_classes", "skipped_items", "params:ingestion"],
                outputs="ingestion_report@json",
                name="report_ingestion",
            ),
        ]
    )
