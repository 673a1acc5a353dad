"""What the SemPLES objective prefers, measured on the toy world with the run's own toy CLIP.

Scores L_match (Eq. 1), the area term, L_refine (Eq. 3, against the hand-written context texts
and, when the run learned them, its prompts) on the ground-truth masks of val scenes, on
blurred / eroded / dilated copies, on the object with its context, the context alone, the whole
image, and on the training masks of the run's initial, stage-1 and stage-3 generators. If the
objective is not lowest near the ground truth, no optimiser can make the stages help. Where it
is, the last tables say where descent goes from the stage-1 masks (each term's gradient on the
object, the context and elsewhere) and how well stage 2 fitted the prompts to their targets;
two tables say what CLIP sees as a mask grows from the object into its surroundings.

    python benchmarks/objective_preferences.py [--scenes 150] [--lambda-b 1] [--area 3] \
        [--lam 2] [--class-name cow] [--on-context yes|no]

Reads the latest versions of the run's artefacts under data/ (run `kedro run
--pipeline=pseudo_labels` first); prints a Markdown table.
"""

from __future__ import annotations

import argparse
import glob
import json
from pathlib import Path

import pandas as pd
import torch
import yaml

from semples.clip import TOY_CLIP
from semples.clip.model import class_text_features, load_clip
from semples.clip.prompts import PromptLearner
from semples.data.images import to_tensor
from semples.data.toy_world import ToyWorldConfig, render_scene
from semples.diagnostics import (
    Pair,
    mask_gradients_by_region,
    mask_mass_by_region,
    objective_table,
    prompt_fit,
    prompt_similarities,
    ring_similarities,
    similarity_by_growth,
    stage2_fitted_targets,
    stage2_target_charges,
    stage2_view_by_object_count,
)
from semples.models import masks_for_pairs
from semples.parameters import Generator
from semples.training import stages

ROOT = Path(__file__).resolve().parents[1]


def latest(name: str, file: str) -> Path | None:
    found = sorted(glob.glob(str(ROOT / "data" / name / "*" / file)))
    return Path(found[-1]) if found else None


def load_state(folder: str) -> dict | None:
    path = latest(folder, Path(folder).name)
    return torch.load(path, map_location="cpu", weights_only=True) if path else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=150)
    parser.add_argument("--lambda-b", type=float, default=None)
    parser.add_argument("--area", type=float, default=None)
    parser.add_argument("--lam", type=float, default=None)
    parser.add_argument("--class-name", default=None, help="score only this class's pairs")
    parser.add_argument(
        "--on-context", choices=["yes", "no"], default=None,
        help="score only the pairs whose object stands on its context (yes) or not (no)",
    )  # fmt: skip
    args = parser.parse_args()

    params = yaml.safe_load((ROOT / "conf/base/parameters_pseudo_labels.yml").read_text())
    params = params["pseudo_labels"]
    toy = yaml.safe_load((ROOT / "conf/base/parameters_ingestion.yml").read_text())
    world = ToyWorldConfig(**toy["ingestion"]["toy"])
    common = params["train"]["common"]
    lambda_b = common["lambda_b"] if args.lambda_b is None else args.lambda_b
    area = common["area_weight"] if args.area is None else args.area
    lam = common["lam"] if args.lam is None else args.lam
    floor = common.get("similarity_floor")
    names = json.loads(latest("02_intermediate/dataset_classes.json", "dataset_classes.json")
                       .read_text())["class_names"]  # fmt: skip

    clip = load_clip(TOY_CLIP, state_dict=load_state("06_models/clip_weights.pt"))
    labels = class_text_features(clip, names, params["text_template"])
    handwritten = clip.encode_texts([params["handwritten_prompts"][n] for n in names])

    pairs = []
    for index in range(args.scenes):
        scene = render_scene(world, "val", index)
        context = getattr(scene, "context", None)
        for k in scene.labels:
            if args.class_name is not None and names[k] != args.class_name:
                continue
            on_context = context is not None and bool((context == k + 1).any())
            if args.on_context is not None and on_context != (args.on_context == "yes"):
                continue
            pairs.append(Pair(
                image=to_tensor(scene.image), class_index=k, object_mask=scene.mask == k + 1,
                context_mask=None if context is None else context == k + 1,
                scene_objects=len(scene.labels),
            ))  # fmt: skip

    images = torch.stack([p.image for p in pairs])
    batch_index = torch.arange(len(pairs))
    class_index = torch.tensor([p.class_index for p in pairs])
    generators = {
        "initial generator": load_state("06_models/initial_generator_weights.pt"),
        "stage-1 generator": (load_state("06_models/stage1_checkpoint.pt") or {}).get("generator"),
        "stage-3 generator": (load_state("06_models/stage3_checkpoint.pt") or {}).get("generator"),
    }
    settings = Generator(**params["generator"])
    masks = {}
    for name, state in generators.items():
        if state is None:
            continue
        generator = stages.generator_module(settings, len(names), state).eval()
        with torch.no_grad():
            logits = generator(images)
        masks[f"{name}'s masks"] = masks_for_pairs(
            logits, batch_index, class_index, images.shape[-2:], eps=common["mask_eps"],
            activation=common.get("mask_activation", "sigmoid"),
        )  # fmt: skip

    print(f"{len(pairs)} positive pairs of {args.scenes} val scenes; lambda_b={lambda_b}, "
          f"area weight={area}, lambda={lam}, similarity floor={floor}")  # fmt: skip
    for prompts_name, background in (("hand-written context texts", handwritten),):
        table = objective_table(clip, pairs, labels, background, masks, lambda_b, area, lam, floor)
        print(f"\nL_refine against the {prompts_name}:\n")
        print(table.to_string(float_format="%.3f"))
    print("\nCosine of CLIP's view of the object grown by r px (on black) with the class text; "
          "a dip below both ends\nis a valley that masks shrinking from the context onto the "
          "object must climb out of:\n")  # fmt: skip
    print(similarity_by_growth(clip, pairs, labels, names).to_string(float_format="%.3f"))
    texts = {name: labels[k] for k, name in enumerate(names)}
    texts |= {params["handwritten_prompts"][name].removeprefix("a photo of ").rstrip("."):
              handwritten[k] for k, name in enumerate(names)}  # fmt: skip
    print("\nCosine of CLIP's view of the 3 px ring around the object alone (on black) with "
          "each class text, then each context text:\n")  # fmt: skip
    print(ring_similarities(clip, pairs, texts, names).to_string(float_format="%.2f"))
    if any(p.context_mask is not None and p.context_mask.any() for p in pairs):
        print("\nWhat the best prompt stage 2 can fit would make L_refine charge (> 0: the "
              "context is taken off a mask):\n")  # fmt: skip
        print(stage2_target_charges(clip, pairs, labels, names).to_string(float_format="%.3f"))
        print("\nCosine of CLIP's view of the image minus the object with the context text,\n"
              "by the scene's number of objects (stage 2 fits its prompts to it):\n")  # fmt: skip
        print(stage2_view_by_object_count(clip, pairs, handwritten, names)
              .to_string(float_format="%.2f"))  # fmt: skip
    for name, generator_masks in masks.items():
        print(f"\nWhere the {name} put their mass (share on the object, its context, elsewhere):\n")
        print(mask_mass_by_region(pairs, generator_masks, names).to_string(float_format="%.3f"))
    prompts = load_state("06_models/background_prompts.pt")
    if prompts:
        learner = PromptLearner(clip, len(names), length=params["prompts"]["length"],
                                prefix=params["prompts"]["prefix"])  # fmt: skip
        learner.load_state_dict(prompts)
        with torch.no_grad():
            learned = learner()
        table = objective_table(clip, pairs, labels, learned, {}, lambda_b, area, lam, floor)
        print("\nL_refine against the learned prompts:\n")
        print(table[["L_refine", "total"]].to_string(float_format="%.3f"))
        # What each learned prompt describes: a prompt as close to its class text as to the
        # context makes L_refine fight L_match instead of removing the context.
        unit = torch.nn.functional.normalize
        contexts = [params["handwritten_prompts"][name] for name in names]
        texts = {"class text": labels, **{
            text: handwritten[[i] * len(names)] for i, text in enumerate(contexts)
        }}  # fmt: skip
        similarity = pd.DataFrame(
            {name: (unit(learned, dim=-1) * unit(feats, dim=-1)).sum(-1).numpy()
             for name, feats in texts.items()}, index=names,
        )  # fmt: skip
        print("\nCosine of each learned prompt with its class text and with each context text:\n")
        print(similarity.to_string(float_format="%.2f"))
        print("\nCosine of each learned prompt with CLIP's view of (each alone on black):\n")
        print(prompt_similarities(clip, pairs, learned, names).to_string(float_format="%.3f"))
    stage1_masks = masks.get("stage-1 generator's masks")
    if stage1_masks is not None:
        # Where descent from stage 3's starting masks goes (stage 3 starts from stage 1's
        # generator by default), and what stage 2 fitted the prompts to at those masks.
        against = {"hand-written": handwritten,
                   "stage 2's target": stage2_fitted_targets(clip, pairs, stage1_masks, len(names))}
        if prompts:
            against["learned"] = learned
            print("\nHow well stage 2 fitted each learned prompt: cosine with its targets "
                  "(1 - M) X at the stage-1 masks M,\nagainst the masked foreground M X:\n")
            print(prompt_fit(clip, pairs, stage1_masks, learned, names)
                  .to_string(float_format="%.3f"))  # fmt: skip
        print("\nMean gradient dL/dM per pixel at the stage-1 masks, in units of the area term's "
              "(> 0: the term lowers the\nmask there; weights: match_bg x lambda_b, refine x lam):"
              "\n")  # fmt: skip
        gradients = mask_gradients_by_region(
            clip, pairs, stage1_masks, labels, against, names, floor
        )
        print(gradients.to_string(float_format="%.2f"))


if __name__ == "__main__":
    main()
