"""`semsam everything`: every mask at chosen granularity levels, for one image or a whole folder (resumable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from semsam.cli.arguments import add_grid_arguments, add_vocabulary_arguments
from semsam.config import DEFAULT_MODEL, MODEL_CONFIGS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

DESCRIPTION = """Segment everything in an image, or in every image of a folder, at chosen granularity levels.

A grid of points prompts the model; each point gives one mask per level (1 = finest ... 6 = coarsest, by
size). Masks are kept when their predicted IoU and stability are high enough, duplicates are removed per
level (box NMS), and each mask is nested under the smallest coarser-level mask that contains it (at least 90%
of its area): a whole/part tree.

For each image STEM, writes to --out:
  STEM.json                      SA-1B style annotations (COCO RLE, bbox XYWH, area, predicted_iou,
                                 stability_score, point_coords, crop_box, level, label, parent, children;
                                 label: object and part names, null without trained heads); file_name is the image's
                                 path relative to this JSON. `semsam train` reads this layout (image next to
                                 STEM.json: use --out = the image folder for that).
  STEM/overlay_level{L}.png      every mask of level L, one colour each, non-overlapping
  STEM/tree.json                 the whole/part tree; with labels, each node's label, name and path
                                 ("person > hair": a mask names its part when its parent is the same object)
  STEM/coco.json                 COCO-format annotations, one category per level

With --labels (a model whose object/part heads were trained, such as the embedded default), also:
  STEM/panoptic_level{L}.png     COCO panoptic segment map of level L: id = R + 256 G + 256^2 B = 1 + mask id,
                                 0 = no mask; non-overlapping (where masks overlap, the smaller one shows)
  STEM/panoptic.json             COCO panoptic annotations, one "image" per level (image_id = level);
                                 categories: the object names (ids 1..N), then the part names (N+1..N+M)
and each overlay writes the names of the masks wide enough to hold them.

On a folder, images whose STEM.json exists are skipped, so a stopped run continues where it was; files are
written atomically and STEM.json last, so a killed run loses at most the image it was working on.

examples:
  semsam everything semsam/assets/example.jpg --out everything_out
  semsam everything photos/ --levels 1,3,6 --out annotations
  semsam everything photo.jpg --labels --objects "person,dog,car" --parts "head,hair,wheel"
  semsam everything photos/ --out photos --points-per-side 16      # SA-1B layout, JSON beside each image
  semsam everything photo.jpg --model sam_vit_b --checkpoint sam_vit_b_01ec64.pth \\
      --pred-iou-thresh 0.88 --stability-thresh 0.95 --match-sam   # SAM's own mask set"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "everything", help="segment everything in an image or a folder (automatic masks, whole/part tree)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", metavar="IMAGE|FOLDER", help="an image file, or a folder of images (not recursive)")
    parser.add_argument("--levels", metavar="L,L,...",
                        help="granularity levels to produce, 1 = finest ... 6 = coarsest (default: all the model "
                        "gives: 6 for Semantic-SAM, 3 for SAM)")
    parser.add_argument("--out", default="semsam_everything", metavar="DIR",
                        help="output folder (default: semsam_everything)")
    parser.add_argument("--model", metavar="NAME", help=f"registered model: {', '.join(MODEL_CONFIGS)} "
                        f"(default: the checkpoint's own, else the embedded {DEFAULT_MODEL})")
    parser.add_argument("--checkpoint", metavar="PATH", help="semsam checkpoint file (default: embedded weights)")
    add_grid_arguments(parser)
    parser.add_argument("--labels", action="store_true",
                        help="name every mask (object and part): names in the tree and on the overlays, and COCO "
                        "panoptic files; needs a model with trained object/part heads")
    add_vocabulary_arguments(parser)
    parser.add_argument("--match-sam", action="store_true",
                        help="give SAM's SamAutomaticMaskGenerator's mask set: NMS across levels, stability judged "
                        "at full resolution (slower)")
    parser.set_defaults(func=run)


def parse_levels(text: str) -> tuple[int, ...]:
    """Parses "1,3,6" into (1, 3, 6), naming the flag on error."""
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--levels {text!r}: expected comma-separated integers such as 1,3,6") from None
    if not levels or min(levels) < 1 or len(set(levels)) != len(levels):
        raise ValueError(f"--levels {text!r}: give distinct levels from 1 (finest) upwards, such as 1,3,6")
    return levels


def find_images(path: Path) -> list[Path]:
    """The image itself, or the images directly inside a folder, sorted; refuses names that would collide."""
    if not path.exists():
        raise ValueError(f"{path} does not exist; give an image file or a folder of images")
    if path.is_file():
        return [path]
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    stems: dict[str, Path] = {}
    for image in images:
        if image.stem in stems:
            raise ValueError(f"{stems[image.stem].name} and {image.name} would both be written as {image.stem}.json; "
                             "rename one of them")
        stems[image.stem] = image
    return images


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from semsam.automatic import MaskGenerator
    from semsam.automatic.outputs import write_image_outputs
    from semsam.build import load_model
    from semsam.image import read_image

    levels = None if args.levels is None else parse_levels(args.levels)
    if args.points_per_side < 1:
        raise ValueError(f"--points-per-side must be positive, got {args.points_per_side}")
    source = Path(args.input)
    images = find_images(source)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder to write the results into")
    todo = [image for image in images if not (out / f"{image.stem}.json").is_file()]
    if len(todo) < len(images):
        _progress(f"skipping {len(images) - len(todo)} finished image(s) already in {out}")
    if not todo:
        print(f"nothing to do: all {len(images)} image(s) have results in {out}")
        return 0
    model_name = args.checkpoint or args.model or DEFAULT_MODEL
    _progress(f"loading model {model_name} ...")
    model = load_model(args.model, checkpoint=args.checkpoint)
    generator = MaskGenerator(model, levels=levels, points_per_side=args.points_per_side, output_mode="coco_rle",
                              pred_iou_thresh=args.pred_iou_thresh, stability_score_thresh=args.stability_thresh,
                              match_sam=args.match_sam, objects=args.objects, parts=args.parts)
    if args.labels and not generator.predictor.labels_available:
        raise ValueError(f"--labels: the object/part heads of {model_name} were never trained, so its masks have no "
                         "names; leave out --model and --checkpoint to use the embedded default, or give a "
                         "checkpoint trained on data with object/part classes")
    vocabulary = generator.predictor.vocabulary if args.labels else None
    failed: list[str] = []
    for image_path in tqdm(todo, desc="segmenting everything", unit="image", disable=len(todo) == 1):
        json_path = out / f"{image_path.stem}.json"
        _remove_stale_temporaries(json_path)
        try:
            image = read_image(image_path)
        except ValueError as error:
            if len(images) == 1:
                raise
            failed.append(str(error))
            continue
        masks = generator.generate(image)
        written = write_image_outputs(masks, image, image_path, json_path, image_id=images.index(image_path) + 1,
                                      containment_threshold=generator.containment_threshold, vocabulary=vocabulary)
        if len(todo) == 1:
            roots = sum(mask.parent is None for mask in masks)
            print(f"{len(masks)} masks ({roots} roots of the whole/part tree); wrote {', '.join(map(str, written))}")
    if failed:
        raise ValueError(f"{len(failed)} image(s) could not be read and were skipped: " + "; ".join(failed))
    if len(todo) > 1:
        print(f"done: {len(todo)} image(s) segmented, results in {out}")
    return 0


def _remove_stale_temporaries(json_path: Path) -> None:
    """Deletes temp files that a killed run left while writing this image's outputs (see `write_atomic`)."""
    extras = json_path.with_suffix("")
    stale = list(json_path.parent.glob(f".{json_path.name}.*.tmp"))
    stale += list(extras.glob(".*.tmp")) if extras.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
