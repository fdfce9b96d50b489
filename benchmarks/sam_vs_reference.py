"""semsam's SAM ViT-B against the reference segment-anything, side by side in one process, same random weights.

Run from the repository root (the reference needs `pip install segment-anything`; torchvision is stood in for):
    OMP_NUM_THREADS=2 python -m benchmarks.sam_vs_reference --repeats 3
Reports the best-of-N image-encoding seconds, decoder milliseconds per prompt, and the parity of the outputs:
image embeddings on one input, and the masks of every timed click on the image (SamPredictor's resizing included).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from semsam import Predictor, load_model, read_image

EXAMPLE = Path(__file__).resolve().parents[1] / "semsam" / "assets" / "example.jpg"
# The reference's torchvision stand-in lives with the tests.
TESTS = Path(__file__).resolve().parents[1] / "tests"


def best_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="encodings per implementation (best is reported)")
    parser.add_argument("--clicks", type=int, default=20, help="single-click predictions timed per implementation")
    parser.add_argument("--image", default=str(EXAMPLE))
    args = parser.parse_args()
    sys.path.insert(0, str(TESTS))
    from sam_reference import standin_modules

    sys.modules.update(standin_modules())
    from segment_anything import SamPredictor, sam_model_registry

    torch.manual_seed(0)
    reference = sam_model_registry["vit_b"]().eval()
    with torch.no_grad():
        for tensor in reference.state_dict().values():
            tensor.add_(torch.randn_like(tensor) * 0.02)  # rel-pos tables and pos_embed start at zero
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "sam_vit_b_random.pth"
        torch.save(reference.state_dict(), path)
        ours = load_model("sam_vit_b", checkpoint=path)

    image = read_image(args.image)
    rng = np.random.default_rng(0)
    height, width = image.shape[:2]
    clicks = np.stack([rng.uniform(0, width, args.clicks), rng.uniform(0, height, args.clicks)], 1)
    print(f"image {width}x{height}, torch {torch.__version__}, {torch.get_num_threads()} threads")

    reference_predictor, predictor = SamPredictor(reference), Predictor(ours)
    encode = {"reference": [], "semsam": []}
    for _ in range(args.repeats):  # alternate, so both see the same machine load
        encode["reference"].append(best_seconds(lambda: reference_predictor.set_image(image), 1))
        encode["semsam"].append(best_seconds(lambda: predictor.set_image(image), 1))

    def reference_clicks() -> None:
        for x, y in clicks:
            reference_predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]))

    def our_clicks() -> None:
        for x, y in clicks:
            predictor.predict(points=[(x, y)], labels=[1])

    decode = {"reference": best_seconds(reference_clicks, 2) / args.clicks * 1000,
              "semsam": best_seconds(our_clicks, 2) / args.clicks * 1000}

    with torch.inference_mode():
        batch = torch.randn(1, 3, 1024, 1024)
        embedding_diff = (reference.image_encoder(batch) - ours.image_encoder(batch)).abs().max().item()
    differing = total = 0
    for x, y in clicks:
        masks, _, _ = reference_predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([1]))
        ours_masks = predictor.predict(points=[(x, y)], labels=[1]).masks  # ordered by area
        masks = masks[np.argsort(masks.reshape(len(masks), -1).sum(1), kind="stable")]
        differing, total = differing + int((masks != ours_masks).sum()), total + masks.size

    print(f"{'':10} {'encode s (best)':>16} {'all runs':>24} {'decoder ms/click':>17}")
    for name in ("reference", "semsam"):
        runs = ", ".join(f"{t:.2f}" for t in encode[name])
        print(f"{name:10} {min(encode[name]):16.2f} {runs:>24} {decode[name]:17.1f}")
    print(f"encode speed-up {min(encode['reference']) / min(encode['semsam']):.2f}x, "
          f"decoder speed-up {decode['reference'] / decode['semsam']:.2f}x")
    print(f"parity on the same 1024x1024 input: image embeddings max abs diff {embedding_diff:.2e}")
    print(f"parity on the image: masks of {args.clicks} clicks agree on {100 * (1 - differing / total):.4f}% of "
          f"pixels ({differing} of {total} differ)")


if __name__ == "__main__":
    main()
