"""How much a model's features are shared between the modalities (the demo's diagnostic).

    python studies/modality_gap.py --data ~/.cache/vireid/demo-data --weights START.pt [KEY=VALUE ...]
    python studies/modality_gap.py --data DIR --checkpoint runs/demo/checkpoints/final.pt

Nearest-neighbour Rank-1 (cosine, the query's own camera excluded) on the test set of a SYSU-layout
root, gallery = the all-search multi-shot gallery of trial 0 plus the infrared queries themselves:
visible -> visible, infrared -> infrared, infrared -> visible, and two probes of colour dependence:
infrared -> visible with the visible images shown in luminance grey, and visible -> visible with
every visible image through its own random thermal palette (RGB -> grey lookup table). A model that
recognises people within each modality but not across them scores high on the first two and near
chance on the others. Settings come from the `demo` preset plus KEY=VALUE overrides.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch


def nearest_rank1(sim: np.ndarray, pid: np.ndarray, cam: np.ndarray, query: np.ndarray, gallery: np.ndarray) -> float:
    """Fraction of `query` rows whose most similar `gallery` row from another camera has their pid."""
    qi, gi = np.flatnonzero(query), np.flatnonzero(gallery)
    s = sim[np.ix_(qi, gi)].copy()
    s[cam[qi][:, None] == cam[gi][None, :]] = -np.inf
    return float((pid[gi][s.argmax(1)] == pid[qi]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="SYSU-MM01-layout root (e.g. the demo's data)")
    parser.add_argument("--weights", help="start weights (state_dict), e.g. the demo's cached pre-training")
    parser.add_argument("--checkpoint", help="a vireid checkpoint instead of --weights")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random palettes")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()

    from vireid.config import load_config, resolve_cache_dir
    from vireid.data.image_cache import load_images
    from vireid.data.registry import open_dataset
    from vireid.data.transforms import imagenet_denormalize, imagenet_normalize, luminance, to_normalized_tensor
    from vireid.demo.pretrain import RandomThermalPalette
    from vireid.models import create_model, load_model

    cfg = load_config("demo", [f"data.root={args.data}"] + ([f"model.weights_path={args.weights}"] if args.weights else [])
                      + args.overrides)
    model = load_model(args.checkpoint)[0] if args.checkpoint else create_model(cfg.model)
    model.eval()
    ds = open_dataset("sysu", args.data)
    samples = list(ds.query("all")) + list(ds.gallery("all", trial=0, shots=10))
    pid = np.array([s.pid for s in samples])
    cam = np.array([s.camid for s in samples])
    infrared = np.isin(cam, [3, 6])
    images = load_images(samples, cfg.data.height, cfg.data.width, resolve_cache_dir(cfg), key="modality-gap",
                         progress=False)
    x = torch.stack([to_normalized_tensor(u) for u in images])

    def features(inputs: torch.Tensor) -> np.ndarray:
        """Cosine similarities of all images, each through its own modality's stem."""
        parts, order = [], []
        with torch.no_grad():
            for mask, modality in ((~infrared, "visible"), (infrared, "infrared")):
                rows = np.flatnonzero(mask)
                parts += [model(inputs[rows[i:i + 128]], modality=modality) for i in range(0, len(rows), 128)]
                order.append(rows)
        f = torch.empty(len(inputs), parts[0].shape[1])
        f[np.concatenate(order)] = torch.cat(parts)
        f = torch.nn.functional.normalize(f, dim=1).numpy()
        return f @ f.T

    grey = lambda t: imagenet_normalize(luminance(imagenet_denormalize(t)).clamp(0, 1)[None].repeat(3, 1, 1))  # noqa: E731
    palette = RandomThermalPalette(generator=torch.Generator().manual_seed(args.seed))
    plain = features(x)
    as_grey = features(torch.stack([t if ir else grey(t) for t, ir in zip(x, infrared)]))
    as_palette = features(torch.stack([t if ir else palette(t) for t, ir in zip(x, infrared)]))
    ids = len(set(pid.tolist()))
    print(f"{ids} test identities, {int(infrared.sum())} infrared and {int((~infrared).sum())} visible images; "
          f"chance Rank-1 ~ {100 / ids:.1f}%")
    rows = [("visible -> visible", plain, ~infrared, ~infrared), ("infrared -> infrared", plain, infrared, infrared),
            ("infrared -> visible", plain, infrared, ~infrared),
            ("infrared -> visible (visible in grey)", as_grey, infrared, ~infrared),
            ("visible -> visible (random thermal palettes)", as_palette, ~infrared, ~infrared)]
    for name, sim, q, g in rows:
        print(f"  {name:46s} Rank-1 {100 * nearest_rank1(sim, pid, cam, q, g):5.1f}%")


if __name__ == "__main__":
    sys.exit(main())
