"""Procedural people for the synthetic dataset: identities, cameras, drawing and rendering.

A person is drawn once per image as a *part map*: a (H, W) uint8 array whose value says which
body part or garment covers each pixel (`BACKGROUND`, `SKIN`, `TOP`, ...). A camera then renders
the part map: a visible camera looks each part up in the identity's colour palette; a
near-infrared camera (SYSU-MM01's cam3 and cam6, LLCM) in the identity's near-infrared
reflectance, which follows the colour's brightness only loosely; a thermal camera (RegDB) in the
identity's thermal emissivity, drawn independently of the colours. All modalities share shape,
garment cut, patterns and accessories.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

# Part ids in the part map; index into the palettes below.
BACKGROUND, SKIN, HAIR, TOP, TOP2, BOTTOM, BOTTOM2, SHOES, HAT, BAG, BACKPACK, LOGO = range(12)
N_PARTS = 12

FRONT, BACK, SIDE = 0, 1, 2
VIEW_NAMES = ("front", "back", "side")

TOP_PATTERNS = ("plain", "stripes_h", "stripes_v", "checks", "logo")
BOTTOM_KINDS = ("trousers", "shorts", "skirt")

# Domain tags keep the random streams of identities, cameras and images apart.
TAG_IDENTITY, TAG_CAMERA, TAG_IMAGE = 11, 13, 17


@dataclass(frozen=True)
class Identity:
    """Everything that stays the same for one person across cameras, views and modalities.

    Lengths are fractions of the person's height on screen; `colors` is (N_PARTS, 3) RGB in
    [0, 1]; `near_infrared` is (N_PARTS,) brightness under an infrared illuminator in [0, 1],
    loosely tied to the colours; `emissivity` is (N_PARTS,) thermal brightness in [0, 1], drawn
    independently of them.
    """

    pid: int
    stature: float
    shoulder: float
    hip_ratio: float
    head: float
    leg: float
    arm: float
    long_hair: bool
    long_sleeves: bool
    bottom_kind: str
    top_pattern: str
    bottom_striped: bool
    stripe_period: float
    hat: bool
    bag: bool
    bag_side: int
    backpack: bool
    logo_dx: float
    logo_r: float
    colors: np.ndarray
    near_infrared: np.ndarray
    emissivity: np.ndarray


@dataclass(frozen=True)
class Camera:
    """How one camera sees: modality, light, blur, framing and its background scene."""

    name: str
    code: int
    infrared: bool
    outdoor: bool
    gain: float
    cast: tuple[float, float, float]
    blur: float
    noise: float
    scale: float
    vpos: float
    rotation: float
    quality: int
    wall: tuple[float, float, float]
    ground: tuple[float, float, float]
    horizon: float
    thermal: bool = False  # an infrared camera that sees emitted heat (RegDB), not reflected near-infrared


_SYSU_CAMERAS = (
    Camera("cam1", 1, False, False, 1.00, (1.06, 1.00, 0.90), 0.5, 0.020, 0.88, 0.50, 2.0, 92,
           (0.74, 0.70, 0.62), (0.46, 0.40, 0.34), 0.66),
    Camera("cam2", 2, False, False, 0.82, (0.94, 1.00, 1.10), 0.8, 0.025, 0.80, 0.35, 2.5, 90,
           (0.62, 0.66, 0.70), (0.34, 0.34, 0.38), 0.60),
    Camera("cam3", 3, True, False, 0.95, (1.0, 1.0, 1.0), 0.9, 0.030, 0.86, 0.55, 2.0, 90,
           (0.16, 0.16, 0.16), (0.22, 0.22, 0.22), 0.64),
    Camera("cam4", 4, False, True, 1.12, (1.00, 1.03, 0.97), 0.4, 0.025, 0.90, 0.60, 1.5, 93,
           (0.58, 0.56, 0.52), (0.38, 0.46, 0.30), 0.55),
    Camera("cam5", 5, False, True, 1.02, (1.02, 0.99, 1.06), 0.9, 0.030, 0.74, 0.45, 3.0, 88,
           (0.70, 0.68, 0.66), (0.52, 0.50, 0.46), 0.50),
    Camera("cam6", 6, True, True, 1.00, (1.0, 1.0, 1.0), 1.1, 0.040, 0.80, 0.50, 3.0, 88,
           (0.24, 0.24, 0.24), (0.34, 0.34, 0.34), 0.52),
)
_REGDB_CAMERAS = (
    Camera("Visible", 21, False, True, 1.00, (1.00, 1.00, 1.02), 0.6, 0.025, 0.86, 0.50, 2.0, 92,
           (0.60, 0.60, 0.58), (0.44, 0.44, 0.42), 0.58),
    Camera("Thermal", 22, True, True, 1.00, (1.0, 1.0, 1.0), 1.2, 0.040, 0.86, 0.50, 2.0, 90,
           (0.20, 0.20, 0.20), (0.30, 0.30, 0.30), 0.58, thermal=True),
)
CAMERAS: dict[str, Camera] = {c.name: c for c in _SYSU_CAMERAS + _REGDB_CAMERAS}


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """(K, 3) HSV in [0, 1] -> (K, 3) RGB in [0, 1], vectorised over colours."""
    h, s, v = hsv[:, 0] * 6.0, hsv[:, 1], hsv[:, 2]
    k = (np.array([5.0, 3.0, 1.0]) + h[:, None]) % 6.0
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _garment_colors(rng: np.random.Generator, k: int) -> np.ndarray:
    """(k, 3) clothing colours: a mix of saturated colours, greys, blacks and whites."""
    hsv = np.stack([rng.random(k), rng.uniform(0.35, 0.95, k), rng.uniform(0.25, 0.95, k)], axis=1)
    neutral = rng.random(k) < 0.35  # real clothing is often black, grey or white
    hsv[neutral, 1] = rng.uniform(0.0, 0.08, int(neutral.sum()))
    hsv[neutral, 2] = rng.choice([0.1, 0.3, 0.55, 0.9], int(neutral.sum()))
    return _hsv_to_rgb(hsv)


def _contrasting(rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    """A second colour for stripes/checks that differs clearly from `base` (3,)."""
    other = _garment_colors(rng, 1)[0]
    if np.abs(other - base).sum() < 0.6:
        other = 1.0 - base
    return other


def _contrasting_level(rng: np.random.Generator, base: float) -> float:
    """A thermal level differing from `base` by 0.18-0.35, so patterns show as texture in IR."""
    step = rng.uniform(0.18, 0.35)
    return base + step if base + step <= 0.95 else base - step


# Near-infrared response of a dye, per RGB channel: many dyes that absorb blue and green light
# reflect the near infrared like red light does, so red weighs most.
NIR_CHANNEL_WEIGHTS = np.array([0.55, 0.30, 0.15])
NIR_MATERIAL_SPREAD = 0.2  # half-width of the uniform material term added to every part's level


def _near_infrared_levels(colors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N_PARTS,) near-infrared brightness: the colour's weighted brightness, compressed into
    [0.15, 0.85], plus a uniform material term of +-NIR_MATERIAL_SPREAD, so it follows the colour
    only loosely (correlation about 0.8); skin reflects strongly whatever its tone; a pattern's
    second garment keeps at least 0.15 of contrast so stripes stay visible."""
    levels = 0.15 + 0.7 * (colors @ NIR_CHANNEL_WEIGHTS)
    levels = levels + rng.uniform(-NIR_MATERIAL_SPREAD, NIR_MATERIAL_SPREAD, len(levels))
    levels[SKIN] = rng.uniform(0.75, 0.95)
    for second, first in ((TOP2, TOP), (BOTTOM2, BOTTOM), (LOGO, TOP)):
        if abs(levels[second] - levels[first]) < 0.15:
            levels[second] = levels[first] + (0.15 if levels[first] < 0.5 else -0.15)
    return np.clip(levels, 0.05, 1.0)


@lru_cache(maxsize=4096)
def make_identity(seed: int, pid: int) -> Identity:
    """Draw the person `pid` of dataset `seed`; the same (seed, pid) always gives the same person."""
    rng = np.random.default_rng([seed, TAG_IDENTITY, pid])
    colors = np.zeros((N_PARTS, 3))
    tone = rng.random()
    colors[SKIN] = (1 - tone) * np.array([0.96, 0.80, 0.70]) + tone * np.array([0.42, 0.28, 0.20])
    shade = rng.beta(1.0, 3.0)
    colors[HAIR] = (1 - shade) * np.array([0.07, 0.05, 0.04]) + shade * np.array([0.78, 0.62, 0.36])
    garments = _garment_colors(rng, 6)
    colors[TOP], colors[BOTTOM], colors[HAT], colors[BAG], colors[BACKPACK], colors[LOGO] = garments
    colors[TOP2] = _contrasting(rng, colors[TOP])
    colors[BOTTOM2] = _contrasting(rng, colors[BOTTOM])
    colors[SHOES] = rng.choice([0.08, 0.2, 0.85]) * np.ones(3) + rng.uniform(-0.05, 0.05, 3)

    # Thermal emissivity: drawn on its own stream of numbers, never from the colours above.
    emis = np.zeros(N_PARTS)
    emis[SKIN] = rng.uniform(0.86, 1.0)
    emis[HAIR] = rng.uniform(0.45, 0.70)
    emis[TOP] = rng.uniform(0.25, 0.85)
    emis[TOP2] = _contrasting_level(rng, emis[TOP])
    emis[BOTTOM] = rng.uniform(0.25, 0.80)
    emis[BOTTOM2] = _contrasting_level(rng, emis[BOTTOM])
    emis[SHOES] = rng.uniform(0.12, 0.40)
    emis[HAT] = rng.uniform(0.25, 0.70)
    emis[BAG] = rng.uniform(0.08, 0.50)
    emis[BACKPACK] = rng.uniform(0.08, 0.50)
    emis[LOGO] = _contrasting_level(rng, emis[TOP])

    return Identity(
        pid=pid,
        stature=float(rng.uniform(0.84, 1.0)),
        shoulder=float(rng.uniform(0.12, 0.19)),
        hip_ratio=float(rng.uniform(0.68, 0.92)),
        head=float(rng.uniform(0.115, 0.155)),
        leg=float(rng.uniform(0.42, 0.52)),
        arm=float(rng.uniform(0.045, 0.065)),
        long_hair=bool(rng.random() < 0.35),
        long_sleeves=bool(rng.random() < 0.5),
        bottom_kind=str(rng.choice(BOTTOM_KINDS, p=[0.6, 0.2, 0.2])),
        top_pattern=str(rng.choice(TOP_PATTERNS, p=[0.3, 0.2, 0.15, 0.15, 0.2])),
        bottom_striped=bool(rng.random() < 0.15),
        stripe_period=float(rng.uniform(0.035, 0.07)),
        hat=bool(rng.random() < 0.25),
        bag=bool(rng.random() < 0.35),
        bag_side=int(rng.choice([-1, 1])),
        backpack=bool(rng.random() < 0.35),
        logo_dx=float(rng.uniform(-0.04, 0.04)),
        logo_r=float(rng.uniform(0.035, 0.06)),
        colors=colors.astype(np.float32),
        # its own stream of numbers, so the rest of the identity is what generator version 1 drew
        near_infrared=_near_infrared_levels(colors, np.random.default_rng([seed, TAG_IDENTITY, pid, 1]))
        .astype(np.float32),
        emissivity=emis.astype(np.float32),
    )


@lru_cache(maxsize=64)
def camera_background(name: str, seed: int, height: int, width: int) -> np.ndarray:
    """The scene behind the people of one camera, (H + H/4, W + W/2, C) float32 in [0, 1].

    C is 3 for visible cameras and 1 for infrared ones. Each image crops a random window,
    so a camera's images share a recognisable background without being identical.
    """
    cam = CAMERAS[name]
    rng = np.random.default_rng([seed, TAG_CAMERA, cam.code])
    hb, wb = height + height // 4, width + width // 2
    ys = np.arange(hb, dtype=np.float32)[:, None] / hb
    upper = np.asarray(cam.wall, np.float32)
    lower = np.asarray(cam.ground, np.float32)
    bg = np.where((ys < cam.horizon)[..., None], upper, lower) * np.ones((hb, wb, 1), np.float32)

    low = Image.fromarray(rng.random((6, 4)).astype(np.float32))
    lowfreq = np.asarray(low.resize((wb, hb), Image.Resampling.BICUBIC), np.float32)[..., None] - 0.5
    bg = bg + (0.10 if cam.outdoor else 0.06) * lowfreq
    xs = np.arange(wb)
    if cam.outdoor:  # ground texture and a few tall structures (poles, trees, warm walls in IR)
        bg = bg + 0.05 * rng.standard_normal((hb, wb, 1)).astype(np.float32) * (ys >= cam.horizon)[..., None]
        for x0 in rng.integers(0, wb, 2):
            band = (np.abs(xs - x0) < max(1, wb // 24))[None, :, None] & (ys < cam.horizon)[..., None]
            bg = np.where(band, bg * 0.75 + (0.12 if cam.infrared else 0.0), bg)
    else:  # doors / panels on the wall and tile lines on the floor
        for x0 in rng.integers(0, wb, 2):
            band = (np.abs(xs - x0) < wb // 8)[None, :, None] & (ys < cam.horizon)[..., None]
            bg = np.where(band, bg * 0.85, bg)
        tiles = ((np.arange(hb) % max(4, hb // 10)) == 0)[:, None, None] & (ys >= cam.horizon)[..., None]
        bg = np.where(tiles, bg * 0.8, bg)
    bg = np.clip(bg, 0.0, 1.0).astype(np.float32)
    return bg[..., :1] if cam.infrared else bg


@lru_cache(maxsize=64)
def sensor_noise(name: str, seed: int, height: int, width: int) -> np.ndarray:
    """A bank of the camera's pixel noise, (2H, 2W, C) float32 in 0..255 units plus the 0.5 that
    rounds to the nearest grey level; images crop random windows.

    Drawing fresh Gaussian noise for every image costs more than drawing the person, and a
    random window of a larger bank is just as unpredictable for a network.
    """
    cam = CAMERAS[name]
    rng = np.random.default_rng([seed, TAG_CAMERA, cam.code, 1])
    channels = 1 if cam.infrared else 3
    return (255.0 * cam.noise) * rng.standard_normal((2 * height, 2 * width, channels), dtype=np.float32) + 0.5


def _leg(draw: ImageDraw.ImageDraw, hip: float, foot: float, y_hip: float, y_foot: float,
         y0: float, y1: float, half: float, fill: int) -> None:
    """One leg segment from height y0 to y1, following the line from (hip, y_hip) to (foot, y_foot)."""
    t0, t1 = (y0 - y_hip) / (y_foot - y_hip), (y1 - y_hip) / (y_foot - y_hip)
    x0, x1 = hip + t0 * (foot - hip), hip + t1 * (foot - hip)
    draw.polygon([(x0 - half, y0), (x0 + half, y0), (x1 + half, y1), (x1 - half, y1)], fill=fill)


def _draw_legs(draw, p: Identity, hips: tuple[float, float], feet: tuple[float, float],
               yh: float, yf: float, ph: float, half: float) -> None:
    """Legs, bottoms (trousers / shorts / skirt) and shoes."""
    yk = yh + 0.45 * (yf - yh)
    for hip, foot in zip(hips, feet):
        if p.bottom_kind == "trousers":
            _leg(draw, hip, foot, yh, yf, yh, yf, half, BOTTOM)
        elif p.bottom_kind == "shorts":
            _leg(draw, hip, foot, yh, yf, yh, yk, half * 1.1, BOTTOM)
            _leg(draw, hip, foot, yh, yf, yk, yf, half * 0.75, SKIN)
        else:
            _leg(draw, hip, foot, yh, yf, yh, yf, half * 0.75, SKIN)
        draw.rectangle([foot - half * 1.1, yf, foot + half * 1.1, yf + 0.035 * ph], fill=SHOES)
    if p.bottom_kind == "skirt":
        left, right = min(hips) - half, max(hips) + half
        draw.polygon([(left, yh), (right, yh), (right + 0.35 * half, yk + 0.05 * ph),
                      (left - 0.35 * half, yk + 0.05 * ph)], fill=BOTTOM)


def _draw_arm(draw, shoulder: float, hand: float, ys: float, yhand: float, aw: float,
              long_sleeves: bool) -> None:
    """An arm hanging from (shoulder, ys) to (hand, yhand): sleeve in TOP, the rest skin."""
    y_sleeve = yhand - 0.12 * (yhand - ys) if long_sleeves else ys + 0.4 * (yhand - ys)
    _leg(draw, shoulder, hand, ys, yhand, ys, yhand + aw * 0.6, aw * 0.45, SKIN)
    _leg(draw, shoulder, hand, ys, yhand, ys, y_sleeve, aw * 0.55, TOP)


def _draw_head(draw, p: Identity, view: int, cx: float, top: float, ph: float) -> None:
    """Head, hair and hat; the back of the head is hair, the side shows half a face."""
    hh = p.head * ph
    hw = 0.78 * hh
    box = [cx - hw / 2, top, cx + hw / 2, top + hh]
    if view == FRONT:
        draw.ellipse([box[0] - 1, box[1] - 1, box[2] + 1, box[3] - 0.35 * hh], fill=HAIR)
        if p.long_hair:
            draw.rectangle([box[0] - 1, top + 0.3 * hh, box[2] + 1, top + 1.5 * hh], fill=HAIR)
        draw.ellipse([box[0] + 0.08 * hw, top + 0.2 * hh, box[2] - 0.08 * hw, box[3]], fill=SKIN)
    elif view == BACK:
        draw.ellipse(box, fill=HAIR)
        if p.long_hair:
            draw.rectangle([box[0], top + 0.5 * hh, box[2], top + 1.6 * hh], fill=HAIR)
    else:
        draw.ellipse(box, fill=SKIN)
        draw.ellipse([box[0] - 0.15 * hw, top - 1, box[2] - 0.35 * hw, box[3] - 0.2 * hh], fill=HAIR)
        if p.long_hair:
            draw.rectangle([box[0] - 0.1 * hw, top + 0.4 * hh, cx, top + 1.5 * hh], fill=HAIR)
    if p.hat:
        brim = 0.25 * hw if view == SIDE else 0.12 * hw
        draw.rectangle([box[0], top - 0.12 * hh, box[2], top + 0.3 * hh], fill=HAT)
        draw.rectangle([box[0] - 0.12 * hw, top + 0.22 * hh, box[2] + brim, top + 0.34 * hh], fill=HAT)


class Figure(NamedTuple):
    """Where a drawn person's body lands in the image, in pixels.

    cx: body axis; top: top of the head; ph: height; sw / hw: shoulder / hip half-widths;
    aw: arm width; ys / yh / yf / yhand: shoulder, hip, foot and hand heights; line: strap width.
    """

    cx: float
    top: float
    ph: float
    sw: float
    hw: float
    aw: float
    ys: float
    yh: float
    yf: float
    yhand: float
    line: int


def _figure(p: Identity, view: int, height: int, width: int, cam: Camera, rng: np.random.Generator) -> Figure:
    """Place person `p` in the frame: the camera sets scale and position, the image jitters them."""
    ph = min(0.97, p.stature * cam.scale * rng.uniform(0.94, 1.04)) * height
    top = (height - ph) * float(np.clip(cam.vpos + rng.normal(0, 0.12), 0.0, 1.0))
    cx = width / 2 + rng.normal(0, 0.04) * width
    sw = p.shoulder * ph * (0.6 if view == SIDE else 1.0)  # seen from the side, the body is narrower
    hw = sw * (0.95 if view == SIDE else p.hip_ratio)
    yh = top + (1.0 - p.leg) * ph
    return Figure(cx, top, ph, sw, hw, p.arm * ph, top + (p.head + 0.025) * ph, yh, top + 0.965 * ph,
                  yh + 0.05 * ph, max(1, round(0.015 * ph)))


def _draw_side(draw: ImageDraw.ImageDraw, p: Identity, f: Figure, rng: np.random.Generator) -> None:
    """Body seen from the side, walking towards +x: backpack behind, one arm, legs in stride."""
    cx, ph, sw, hw, ys, yh = f.cx, f.ph, f.sw, f.hw, f.ys, f.yh
    if p.backpack:
        draw.rectangle([cx - sw - 0.09 * ph, ys + 0.02 * ph, cx - sw + 1, ys + 0.55 * (yh - ys) + 0.06 * ph],
                       fill=BACKPACK)
    stride = rng.uniform(0.02, 0.09) * ph
    _draw_legs(draw, p, (cx, cx), (cx + stride, cx - stride), yh, f.yf, ph, hw * 0.5)
    draw.polygon([(cx - sw, ys), (cx + sw, ys), (cx + hw, yh + 0.02 * ph), (cx - hw, yh + 0.02 * ph)], fill=TOP)
    draw.rectangle([cx - 0.2 * sw, ys - 0.03 * ph, cx + 0.3 * sw, ys + 1], fill=SKIN)
    _draw_arm(draw, cx, cx + rng.uniform(-0.06, 0.06) * ph, ys + 0.01 * ph, f.yhand, f.aw, p.long_sleeves)
    if p.bag:
        draw.rectangle([cx - 0.3 * sw, yh - 0.02 * ph, cx + 0.9 * sw, yh + 0.09 * ph], fill=BAG)


def _draw_front_back(draw: ImageDraw.ImageDraw, p: Identity, view: int, f: Figure,
                     rng: np.random.Generator) -> None:
    """Body seen from the front or the back: the logo shows only from the front, the backpack
    as a block from the back and as straps from the front, the bag on the mirrored side."""
    cx, ph, sw, hw, aw, ys, yh = f.cx, f.ph, f.sw, f.hw, f.aw, f.ys, f.yh
    half_leg = hw * 0.48
    gap = rng.uniform(0.0, 0.03) * ph
    hips = (cx - hw + half_leg, cx + hw - half_leg)
    _draw_legs(draw, p, hips, (hips[0] - gap, hips[1] + gap), yh, f.yf, ph, half_leg)
    draw.polygon([(cx - sw, ys), (cx + sw, ys), (cx + hw, yh + 0.02 * ph), (cx - hw, yh + 0.02 * ph)], fill=TOP)
    neck = 0.18 * p.head * ph
    draw.rectangle([cx - neck, ys - 0.03 * ph, cx + neck, ys + 0.01 * ph], fill=SKIN)
    for side in (-1, 1):
        swing = rng.uniform(-0.015, 0.03) * ph
        _draw_arm(draw, cx + side * (sw - 0.3 * aw), cx + side * (sw + 0.1 * aw + swing), ys + 0.01 * ph,
                  f.yhand, aw, p.long_sleeves)
    if p.top_pattern == "logo" and view == FRONT:
        lx, ly, r = cx + p.logo_dx * ph, ys + 0.3 * (yh - ys), p.logo_r * ph
        draw.ellipse([lx - r, ly - 0.8 * r, lx + r, ly + 0.8 * r], fill=LOGO)
    if p.backpack and view == BACK:
        draw.rectangle([cx - 0.75 * sw, ys + 0.04 * ph, cx + 0.75 * sw, ys + 0.6 * (yh - ys) + 0.05 * ph],
                       fill=BACKPACK)
    elif p.backpack:
        for side in (-1, 1):
            x = cx + side * 0.55 * sw
            draw.line([(x, ys), (x + side * 0.1 * sw, ys + 0.45 * (yh - ys))], fill=BACKPACK, width=f.line)
    if p.bag:
        side = p.bag_side if view == FRONT else -p.bag_side
        x_out, x_in = cx + side * (sw + aw), cx + side * (sw + aw - 0.11 * ph)
        draw.line([(cx - side * sw * 0.8, ys), (x_out, yh)], fill=BAG, width=f.line)
        draw.rectangle([min(x_out, x_in), yh - 0.03 * ph, max(x_out, x_in), yh + 0.08 * ph], fill=BAG)


def draw_parts(p: Identity, view: int, height: int, width: int, cam: Camera,
               rng: np.random.Generator) -> tuple[np.ndarray, float, float, float, float]:
    """Draw one pose of person `p` seen by `cam` from `view` as a (H, W) uint8 part map.

    Returns the map and (cx, top, ph, half_width) of the person, used for shading.
    """
    f = _figure(p, view, height, width, cam, rng)
    img = Image.new("L", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(img)
    if view == SIDE:
        _draw_side(draw, p, f, rng)
    else:
        _draw_front_back(draw, p, view, f, rng)
    cx, top, ph = f.cx, f.top, f.ph
    _draw_head(draw, p, view, cx, top, ph)

    parts = np.array(img)
    _apply_patterns(parts, p, cx, top, ph)
    angle = float(np.clip(rng.normal(0, cam.rotation), -2 * cam.rotation, 2 * cam.rotation))
    if abs(angle) > 0.5:
        parts = np.asarray(Image.fromarray(parts).rotate(
            angle, resample=Image.Resampling.NEAREST, center=(cx, top + ph / 2)))
    if view == SIDE and rng.random() < 0.5:  # walking to the left instead of to the right
        parts = parts[:, ::-1]
        cx = width - 1 - cx
    return parts, cx, top, ph, f.sw + f.aw


def _apply_patterns(parts: np.ndarray, p: Identity, cx: float, top: float, ph: float) -> None:
    """Stripes and checks on the top (and some bottoms), anchored to the body, in place."""
    period = p.stripe_period * ph
    rows = (np.floor((np.arange(parts.shape[0]) - top) / period) % 2 == 1)[:, None]
    cols = (np.floor((np.arange(parts.shape[1]) - cx) / period) % 2 == 1)[None, :]
    mask = {"stripes_h": rows, "stripes_v": cols, "checks": rows ^ cols}.get(p.top_pattern)
    if mask is not None:
        parts[(parts == TOP) & mask] = TOP2
    if p.bottom_striped:
        parts[(parts == BOTTOM) & cols] = BOTTOM2


def render(parts: np.ndarray, p: Identity, cam: Camera, seed: int, geometry: tuple[float, float, float, float],
           rng: np.random.Generator) -> Image.Image:
    """Render a part map as `cam` sees it: colour, near-infrared reflectance or heat.

    Works in place on one float32 (H, W, C) buffer in 0..255 units; this is the hot loop.
    """
    h, w = parts.shape
    cx, top, ph, half = geometry
    bg_full = camera_background(cam.name, seed, h, w)
    oy = int(rng.integers(0, bg_full.shape[0] - h + 1))
    ox = int(rng.integers(0, bg_full.shape[1] - w + 1))
    xs = (np.arange(w, dtype=np.float32) - cx) / half
    col_shade = np.clip(1.0 - 0.22 * xs * xs, 0.6, 1.0)  # round body: darker towards the sides
    rows = np.clip((np.arange(h, dtype=np.float32) - top) / ph, 0.0, 1.0)
    if cam.infrared:
        # lit from the camera's own illuminator; a thermal camera sees emissivity, not reflectance
        shade = (1.0 - 0.08 * rows)[:, None] * col_shade[None, :]
        levels = p.emissivity if cam.thermal else p.near_infrared
        table = (levels * (cam.gain * rng.uniform(0.94, 1.04)))[:, None]
        light = np.float32(255.0)
    else:
        shade = (1.08 - 0.16 * rows)[:, None] * col_shade[None, :]  # lit from above
        table = p.colors * rng.normal(1.0, 0.03, 3).astype(np.float32)
        light = (255.0 * cam.gain * rng.uniform(0.9, 1.1)) * np.asarray(cam.cast, np.float32)
    img = table.astype(np.float32).take(parts, axis=0)  # (H, W, C)
    img *= shade[..., None]
    np.copyto(img, bg_full[oy:oy + h, ox:ox + w], where=(parts == BACKGROUND)[..., None])
    img *= light
    _blur(img, cam.blur * rng.uniform(0.7, 1.3) * h / 128.0)  # optics first, then sensor noise
    noise_full = sensor_noise(cam.name, seed, h, w)
    ny = int(rng.integers(0, noise_full.shape[0] - h + 1))
    nx = int(rng.integers(0, noise_full.shape[1] - w + 1))
    img += noise_full[ny:ny + h, nx:nx + w]
    out = np.clip(img, 0, 255, out=img).astype(np.uint8)
    if cam.infrared:
        out = np.repeat(out, 3, axis=2)  # SYSU-MM01 stores infrared frames as 3-channel grey JPEGs
    return Image.fromarray(out)


def _blur(img: np.ndarray, sigma: float) -> None:
    """Gaussian-like blur of an (H, W, C) float image in place, by repeated 3-tap passes.

    n passes of the kernel (a, 1 - 2a, a) have variance 2an; a <= 0.25 keeps it smooth. Four
    times cheaper than Pillow's GaussianBlur at these sizes, which matters at 500+ images/s.
    """
    passes = int(np.ceil(sigma * sigma / 0.5))
    if passes == 0:
        return
    a = sigma * sigma / (2 * passes)
    for _ in range(passes):
        img[1:-1] = a * (img[:-2] + img[2:]) + (1.0 - 2.0 * a) * img[1:-1]
        img[:, 1:-1] = a * (img[:, :-2] + img[:, 2:]) + (1.0 - 2.0 * a) * img[:, 1:-1]


def draw_image(seed: int, pid: int, camera: str, index: int, height: int, width: int,
               thermal: bool = False) -> Image.Image:
    """Image `index` of person `pid` in `camera`, a pure function of its arguments. With `thermal`
    an infrared camera sees emitted heat (as RegDB's) instead of reflected near-infrared light."""
    cam = CAMERAS[camera]
    if thermal and cam.infrared:
        cam = replace(cam, thermal=True)
    p = make_identity(seed, pid)
    rng = np.random.default_rng([seed, TAG_IMAGE, pid, cam.code, index])
    view = int(rng.choice(3, p=[0.4, 0.35, 0.25]))
    parts, cx, top, ph, half = draw_parts(p, view, height, width, cam, rng)
    return render(parts, p, cam, seed, (cx, top, ph, half), rng)
