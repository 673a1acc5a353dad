"""pseudo_labels (after ingestion): toy CLIP and initial generator (a CAM classifier) ->
SemPLES stages 1, 2, 3 -> CAMs -> CAM report -> IR labels -> IRNet -> pseudo masks -> report."""

from kedro.pipeline import Pipeline, node, pipeline

from semples import pseudo_labels

COMMON = ["image_index", "dataset_classes", "clip_weights"]


def create_pipeline(**kwargs) -> Pipeline:
    return pipeline(
        [
            node(
                pseudo_labels.toy_clip,
                inputs=["caption_index", "params:ingestion.toy", "params:pseudo_labels"],
                outputs=["clip_weights", "clip_pretraining_loss_history", "clip_zero_shot_report"],
                name="pretrain_toy_clip",
            ),
            node(
                pseudo_labels.initial_generator,
                inputs=["image_index", "dataset_classes", "params:pseudo_labels"],
                outputs=["initial_generator_weights", "cam_classifier_loss_history"],
                name="initialise_generator_as_cam_classifier",
            ),
            node(
                pseudo_labels.stage1,
                inputs=[*COMMON, "initial_generator_weights", "params:pseudo_labels"],
                outputs=["stage1_checkpoint", "stage1_loss_history"],
                name="train_stage1_segment_label_matching",
            ),
            node(
                pseudo_labels.stage2,
                inputs=[*COMMON, "stage1_checkpoint", "params:pseudo_labels"],
                outputs=["background_prompts", "stage2_loss_history"],
                name="train_stage2_contrastive_prompt_learning",
            ),
            node(
                pseudo_labels.stage3,
                inputs=[*COMMON, "stage1_checkpoint", "background_prompts", "params:pseudo_labels"],
                outputs=["stage3_checkpoint", "stage3_loss_history"],
                name="train_stage3_prompt_guided_refinement",
            ),
            node(
                pseudo_labels.training_summary,
                inputs=["stage1_loss_history", "stage2_loss_history", "stage3_loss_history"],
                outputs=["training_loss_history", "training_loss_history_plot"],
                name="summarise_training",
            ),
            node(
                pseudo_labels.cam_set,
                inputs=[
                    "image_index",
                    "dataset_classes",
                    "stage3_checkpoint",
                    "params:pseudo_labels",
                ],
                outputs="cams",
                name="infer_cams",
            ),
            node(
                pseudo_labels.cam_report,
                inputs=[
                    "cams",
                    "image_index",
                    "dataset_classes",
                    "initial_generator_weights",
                    "stage1_checkpoint",
                    "stage3_checkpoint",
                    "params:pseudo_labels",
                ],
                outputs=["cam_metrics@json", "cam_overlays_plot"],
                name="evaluate_cams",
            ),
            node(
                pseudo_labels.ir_labels,
                inputs=["cams", "image_index", "params:pseudo_labels"],
                outputs="ir_labels",
                name="make_ir_labels",
            ),
            node(
                pseudo_labels.irnet,
                inputs=["ir_labels", "image_index", "params:pseudo_labels"],
                outputs=["irnet_weights", "irnet_loss_history"],
                name="train_irnet",
            ),
            node(
                pseudo_labels.pseudo_masks,
                inputs=["cams", "image_index", "irnet_weights", "params:pseudo_labels"],
                outputs="pseudo_masks",
                name="make_pseudo_masks",
            ),
            node(
                pseudo_labels.pseudo_mask_report,
                inputs=[
                    "pseudo_masks",
                    "cams",
                    "ir_labels",
                    "irnet_weights",
                    "image_index",
                    "dataset_classes",
                    "params:pseudo_labels",
                ],
                outputs="pseudo_mask_metrics@json",
                name="evaluate_pseudo_masks",
            ),
        ]
    )
