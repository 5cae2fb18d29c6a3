"""Channel augmentations and train/test transforms, checked against their definitions (METHOD §4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vireid.data.transforms import (
    ChannelAdapGray,
    ChannelExchange,
    ChannelRandomErasing,
    build_train_transforms,
    normalize_images,
    to_normalized_tensor,
)

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
FILL = (0.4914, 0.4822, 0.4465)


def lum(x: torch.Tensor) -> torch.Tensor:
    return 0.2989 * x[0] + 0.5870 * x[1] + 0.1140 * x[2]


def normalise_by_hand(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((img.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1).copy())


def which_copy(out: torch.Tensor, x: torch.Tensor) -> str:
    """Name the candidate `out` equals exactly: channel k copied, luminance, or the input."""
    for k in range(3):
        if torch.equal(out, x[k].expand(3, -1, -1)):
            return f"copy{k}"
    if torch.allclose(out, lum(x).expand(3, -1, -1)):
        return "gray"
    if torch.equal(out, x):
        return "same"
    return "other"


def test_channel_exchange_copies_one_channel_each_uniformly():
    x = torch.randn(3, 6, 4)
    torch.manual_seed(0)
    seen = [which_copy(ChannelExchange(gray=2)(x), x) for _ in range(300)]
    counts = {k: seen.count(k) for k in set(seen)}
    assert set(counts) == {"copy0", "copy1", "copy2"}
    assert all(70 < c < 130 for c in counts.values())
    torch.manual_seed(0)
    seen3 = {which_copy(ChannelExchange(gray=3)(x), x) for _ in range(100)}
    assert seen3 == {"copy0", "copy1", "copy2", "gray"}


def test_channel_adapgray_probability_controls_gray_versus_keep():
    x = torch.randn(3, 5, 5)
    torch.manual_seed(1)
    never = [which_copy(ChannelAdapGray(probability=0.0)(x), x) for _ in range(200)]
    assert "gray" not in never and set(never) == {"copy0", "copy1", "copy2", "same"}
    always = [which_copy(ChannelAdapGray(probability=1.0)(x), x) for _ in range(200)]
    assert "same" not in always and set(always) == {"copy0", "copy1", "copy2", "gray"}
    assert 30 < always.count("gray") < 75                      # k = 3 one time in four


def test_channel_adapgray_luminance_values_by_hand():
    x = torch.zeros(3, 1, 2)
    x[0], x[1], x[2] = 1.0, 2.0, -1.0
    torch.manual_seed(0)
    outs = [ChannelAdapGray(1.0)(x) for _ in range(60)]
    grays = [o for o in outs if which_copy(o, x) == "gray"]
    assert grays
    expected = 0.2989 * 1.0 + 0.5870 * 2.0 - 0.1140
    assert torch.allclose(grays[0], torch.full((3, 1, 2), expected))


def erased_box(out: torch.Tensor, x: torch.Tensor) -> tuple[int, int, int, int] | None:
    changed = (out != x).any(dim=0)
    if not changed.any():
        return None
    rows = torch.nonzero(changed.any(dim=1)).flatten()
    cols = torch.nonzero(changed.any(dim=0)).flatten()
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def test_random_erasing_box_is_a_filled_rectangle_within_bounds():
    h, w = 48, 24
    x = torch.randn(3, h, w)
    torch.manual_seed(2)
    erasing = ChannelRandomErasing(probability=1.0)
    for _ in range(50):
        out = erasing(x)
        box = erased_box(out, x)
        if box is None:                                 # no fitting box in 100 tries: allowed, rare
            continue
        r0, r1, c0, c1 = box
        bh, bw = r1 - r0, c1 - c0
        assert bh < h and bw < w
        for c in range(3):
            assert torch.all(out[c, r0:r1, c0:c1] == torch.tensor(FILL[c]))
        outside = torch.ones(h, w, dtype=torch.bool)
        outside[r0:r1, c0:c1] = False
        assert torch.equal(out[:, outside], x[:, outside])
        # area in [0.02, 0.4]·h·w and aspect in [0.3, 1/0.3], up to the rounding of h and w
        area = bh * bw
        assert (np.sqrt(0.02 * h * w) - 0.5) ** 2 * 0.9 <= area <= (np.sqrt(0.4 * h * w) + 0.5) ** 2
        assert 0.3 * 0.8 <= bh / bw <= (1 / 0.3) * 1.25
    assert torch.equal(x, x.clone())                     # input untouched (no in-place edits)


def test_random_erasing_with_probability_zero_is_identity():
    x = torch.randn(3, 16, 8)
    torch.manual_seed(3)
    assert all(torch.equal(ChannelRandomErasing(0.0)(x), x) for _ in range(20))


def crop_candidates(img: np.ndarray, h: int, w: int, pad: int = 10) -> list[torch.Tensor]:
    """Every pad/crop/flip result the definition allows, normalised by hand."""
    padded = np.zeros((h + 2 * pad, w + 2 * pad, 3), dtype=np.uint8)
    padded[pad:pad + h, pad:pad + w] = img
    out = []
    for i in range(2 * pad + 1):
        for j in range(2 * pad + 1):
            crop = padded[i:i + h, j:j + w]
            out.append(normalise_by_hand(crop))
            out.append(normalise_by_hand(crop[:, ::-1]))
    return out


def matches_some(out: torch.Tensor, candidates: list[torch.Tensor]) -> list[int]:
    return [i for i, c in enumerate(candidates) if torch.allclose(out, c, atol=1e-5)]


def test_train_views_are_pad_crop_flip_normalise_then_channel_op():
    h, w = 16, 8
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    cands = crop_candidates(img, h, w)
    t = build_train_transforms(h, w, erasing_probability=0.0)
    torch.manual_seed(4)
    flips, offsets = set(), set()
    for _ in range(10):
        out = t.visible(img)
        assert out.shape == (3, h, w) and out.dtype == torch.float32
        hits = matches_some(out, cands)
        assert hits
        flips.update(i % 2 for i in hits)
        offsets.update(i // 2 for i in hits)
        ex = t.visible_exchange(img)
        assert torch.equal(ex[0], ex[1]) and torch.equal(ex[1], ex[2])
        assert any(torch.allclose(ex[0], cands[i][k], atol=1e-5) for i in range(len(cands)) for k in range(3))
        ir = t.infrared(img)
        assert any(which_copy(ir, cands[i]) != "other" for i in range(0, len(cands)))
    assert flips == {0, 1} and len(offsets) > 3


def test_without_channel_ops_every_view_is_the_base_view_of_a_colour_image():
    # data.channel_augment=false: the second visible view and the infrared view keep the colours
    h, w = 16, 8
    img = np.random.default_rng(1).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    cands = crop_candidates(img, h, w)
    t = build_train_transforms(h, w, erasing_probability=0.0, channel_ops=False)
    torch.manual_seed(5)
    for view in (t.visible, t.visible_exchange, t.infrared):
        for _ in range(5):
            out = view(img)
            assert matches_some(out, cands)  # a crop of the colour image itself
            assert not torch.equal(out[0], out[1])  # no channel copied over another


def test_erasing_comes_before_the_channel_op():
    # METHOD §4: T_base ends with ChannelRandomErasing, then ChannelExchange: the erased box is
    # copied with the chosen channel, so all three channels hold the same fill constant there.
    h, w = 32, 16
    img = np.random.default_rng(1).integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    t = build_train_transforms(h, w, erasing_probability=1.0)
    torch.manual_seed(5)
    found = 0
    for _ in range(20):
        ex = t.visible_exchange(img)
        assert torch.equal(ex[0], ex[1]) and torch.equal(ex[1], ex[2])
        values = set(ex[0].flatten().tolist())
        fills = [f for f in FILL if any(abs(v - f) < 1e-6 for v in values)]
        found += len(fills) == 1
    assert found >= 15


def test_train_transforms_repeat_under_manual_seed():
    img = np.random.default_rng(2).integers(0, 256, size=(16, 8, 3), dtype=np.uint8)
    t = build_train_transforms(16, 8)
    torch.manual_seed(6)
    a = [t.visible(img), t.visible_exchange(img), t.infrared(img)]
    torch.manual_seed(6)
    b = [t.visible(img), t.visible_exchange(img), t.infrared(img)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    gen = torch.Generator().manual_seed(9)
    tg = build_train_transforms(16, 8, generator=gen)
    first = tg.infrared(img)
    gen.manual_seed(9)
    assert torch.equal(first, tg.infrared(img))


def test_single_and_batched_normalisation_agree_with_hand_formula():
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, size=(4, 12, 6, 3), dtype=np.uint8)
    for img in imgs:
        torch.testing.assert_close(to_normalized_tensor(img), normalise_by_hand(img), rtol=0, atol=1e-5)
    batch = normalize_images(torch.from_numpy(imgs))
    assert batch.shape == (4, 3, 12, 6) and batch.dtype == torch.float32
    torch.testing.assert_close(batch, torch.stack([normalise_by_hand(i) for i in imgs]), rtol=0, atol=1e-5)
    # float images in [0, 1] (B, 3, H, W) take the same normalisation, and the input is left as it was
    floats = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255.0
    before = floats.clone()
    torch.testing.assert_close(normalize_images(floats), batch, rtol=0, atol=1e-5)
    assert torch.equal(floats, before)


@pytest.mark.parametrize("cls", [ChannelExchange, ChannelAdapGray, ChannelRandomErasing])
def test_channel_ops_are_modules_usable_in_sequential(cls):
    seq = torch.nn.Sequential(cls())
    assert seq(torch.randn(3, 8, 4)).shape == (3, 8, 4)


def test_make_batch_and_seeded_loader_give_the_same_tensors_with_or_without_workers():
    from vireid.data.loaders import BatchLoader, TrainingViews, make_batch

    rng = np.random.default_rng(4)
    vis = rng.integers(0, 256, size=(10, 16, 8, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, size=(6, 16, 8, 3), dtype=np.uint8)
    batch = make_batch(vis, [3, 1, 3], to_normalized_tensor)
    torch.testing.assert_close(batch, torch.stack([normalise_by_hand(vis[i]) for i in (3, 1, 3)]), rtol=0, atol=1e-5)

    build = TrainingViews(vis, ir, build_train_transforms(16, 8))
    sampler = [(np.array([0, 2]), np.array([1, 5])), (np.array([7, 9]), np.array([0, 3]))]
    runs = [list(BatchLoader(sampler, build, num_workers=workers, seed=11)) for workers in (0, 2)]
    for a, b in zip(*runs):
        assert a[0].shape == (2, 3, 16, 8) and a[2].shape == (2, 3, 16, 8)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
    other_seed = list(BatchLoader(sampler, build, seed=12))
    assert not torch.equal(other_seed[0][0], runs[0][0][0])     # another seed, another augmentation


def test_training_views_build_the_three_views_of_each_step_the_same_with_workers():
    from vireid.data.loaders import BatchLoader, TrainingViews

    rng = np.random.default_rng(5)
    vis = rng.integers(0, 256, size=(10, 16, 8, 3), dtype=np.uint8)
    ir = rng.integers(0, 256, size=(6, 16, 8, 3), dtype=np.uint8)
    t = build_train_transforms(16, 8)
    build = TrainingViews(vis, ir, t)
    # a CMC phase-2 iteration (main + mixed step), a phase-1 one (no mixed step), a plain SCA step
    steps = [[([0, 2, 4], [1, 5]), ([3, 3], [0, 1])], [([7, 9], [0, 3]), None], ([1], [2])]
    runs = [list(BatchLoader(steps, build, num_workers=w, seed=3)) for w in (0, 2)]
    for a, b in zip(*runs):
        flat_a = [x for part in (a if isinstance(a, list) else [a]) if part is not None for x in part]
        flat_b = [x for part in (b if isinstance(b, list) else [b]) if part is not None for x in part]
        assert len(flat_a) == len(flat_b) and all(torch.equal(x, y) for x, y in zip(flat_a, flat_b))
    main, mixed = runs[0][0]
    assert [v.shape[0] for v in main] == [3, 3, 2] and [v.shape[0] for v in mixed] == [2, 2, 2]
    assert runs[0][1][1] is None and len(runs[0][2]) == 3
    # each view comes from its modality's images: black visible images, white infrared ones
    # (normalised black is below -1.8 in every channel and white above 2.0, whatever channel is copied)
    plain = build_train_transforms(16, 8, pad=0, erasing_probability=0.0)
    black, white = np.zeros((2, 16, 8, 3), np.uint8), np.full((2, 16, 8, 3), 255, np.uint8)
    x_v, x_e, x_r = TrainingViews(black, white, plain)(([1], [0]))
    assert x_v.max() < -1.7 and x_e.max() < -1.7 and x_r.min() > 1.9


def test_seeded_loader_leaves_the_global_rng_as_it_found_it_with_or_without_workers():
    from vireid.data.loaders import BatchLoader, TrainingViews

    vis = np.random.default_rng(0).integers(0, 256, size=(4, 16, 8, 3), dtype=np.uint8)
    build = TrainingViews(vis, vis, build_train_transforms(16, 8))
    after = []
    for workers in (0, 2):
        torch.manual_seed(123)
        list(BatchLoader([([0, 1], [2]), ([3], [0])], build, num_workers=workers, seed=5))
        after.append(torch.rand(4))  # what the run draws next (e.g. the SCA confidence pass's views)
    torch.manual_seed(123)
    assert torch.equal(after[0], after[1]) and torch.equal(after[0], torch.rand(4))


def test_the_channel_augment_setting_reaches_the_runs_training_views():
    from vireid.config import load_config
    from vireid.engine.context import RunContext

    for setting, expected in (("true", True), ("false", False)):
        cfg = load_config("smoke", [f"data.channel_augment={setting}"])
        views = RunContext.from_config(cfg, None, torch.device("cpu")).train_transforms()
        assert (views.visible_exchange.channel_op is not None) is expected
        assert (views.infrared.channel_op is not None) is expected
        assert views.visible.channel_op is None
