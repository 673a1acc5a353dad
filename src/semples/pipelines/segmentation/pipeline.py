"""segmentation (after pseudo_labels): DeepLabV2 trained on a version of the pseudo masks ->
predictions on the validation split -> report."""

from kedro.pipeline import Pipeline, node, pipeline

from semples.segmentation import jobs


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                jobs.train_deeplab,
                inputs=["pseudo_masks", "image_index", "dataset_classes", "params:segmentation"],
                outputs=["deeplab_weights", "deeplab_loss_history"],
                name="train_deeplab",
            ),
            node(
                jobs.predict_segmentation,
                inputs=["deeplab_weights", "image_index", "params:segmentation"],
                outputs="seg_predictions",
                name="predict_segmentation",
            ),
            node(
                jobs.evaluate_segmentation,
                inputs=[
                    "seg_predictions",
                    "pseudo_masks",
                    "deeplab_weights",
                    "deeplab_loss_history",
                    "image_index",
                    "dataset_classes",
                    "params:segmentation",
                ],
                outputs="segmentation_metrics@json",
                name="evaluate_segmentation",
            ),
        ]
    )
