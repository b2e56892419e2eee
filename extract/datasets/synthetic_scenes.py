"""Procedural scenes for the synthetic datasets: 1-3 coloured shapes on a varied background.

A scene is sampled from its own seeded generator (``seed, split, index``), so one image never
depends on how many images the other splits hold. Objects never overlap, and their centres keep a
margin from the middle lines so that "left half" / "top half" are never ambiguous. Two background
styles stand for the two VCR sources: ``plain`` (noisy solid colour or gradient, written as
``lsmdc_`` movies) and ``textured`` (stripes, checks or blotches, written as ``movieclips_``),
which gives a domain shift by source besides the split ``test_shifted``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

# Saturated object colours, far from the muted backgrounds (base names; synonyms are text-side).
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (40, 165, 55),
    "blue": (35, 75, 215),
    "yellow": (235, 210, 30),
    "purple": (135, 45, 175),
    "orange": (245, 135, 25),
}
COLOURS = tuple(PALETTE)
SHAPES = ("box", "ball", "pyramid", "ring")  # drawn as square, disc, triangle, annulus
SIZES = ("small", "large")
STYLES = {"plain": ("noise", "gradient"), "textured": ("stripes", "checks", "blotches")}
DIAMETER = {"small": 0.22, "large": 0.36}  # fraction of the image side
SUPERSAMPLE = 2  # shapes are drawn at 2x and downsampled, for smooth edges

Pair = tuple[str, str]  # (colour, shape)


@dataclass(frozen=True)
class SceneConfig:
    size: int = 64  # image side in pixels
    max_objects: int = 3
    held_out: tuple[Pair, ...] = ()  # colour-shape pairs only test_shifted may show
    shifted: bool = False  # test_shifted: the first object is always a held-out pair
    jpeg_quality: int = 90


@dataclass(frozen=True)
class Thing:
    """One object; ``box`` is ``(x1, y1, x2, y2)`` in pixels of the final image."""

    colour: str
    shape: str
    size: str
    box: tuple[int, int, int, int]

    @property
    def pair(self) -> Pair:
        return (self.colour, self.shape)

    @property
    def centre(self) -> tuple[float, float]:
        x1, y1, x2, y2 = self.box
        return ((x1 + x2) / 2, (y1 + y2) / 2)

    def sides(self, image_size: int) -> tuple[str, str]:
        """(``left``/``right``, ``top``/``bottom``): the halves holding the centre."""
        x, y = self.centre
        return (
            "left" if x < image_size / 2 else "right",
            "top" if y < image_size / 2 else "bottom",
        )


@dataclass(frozen=True)
class Scene:
    style: str  # plain | textured
    background: str  # one of STYLES[style]
    things: tuple[Thing, ...]
    size: int


def allowed_pairs(held_out: tuple[Pair, ...]) -> list[Pair]:
    return [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in held_out]


def sample_scene(rng: np.random.Generator, config: SceneConfig) -> Scene:
    """Distinct colour-shape pairs, no overlap; a held-out pair first on test_shifted."""
    style = str(rng.choice(list(STYLES)))
    background = str(rng.choice(STYLES[style]))
    pool = allowed_pairs(() if config.shifted else config.held_out)
    count = int(rng.integers(1, config.max_objects + 1))
    things: list[Thing] = []
    for position in range(count):
        first_shifted = config.shifted and position == 0 and config.held_out
        choices = list(config.held_out) if first_shifted else pool
        choices = [pair for pair in choices if pair not in {t.pair for t in things}]
        colour, shape = choices[int(rng.integers(len(choices)))]
        size = str(rng.choice(SIZES))
        box = _place(rng, config.size, size, [t.box for t in things])
        if box is None and size == "large":
            size, box = "small", _place(rng, config.size, "small", [t.box for t in things])
        if box is not None:
            things.append(Thing(colour, shape, size, box))
    return Scene(style, background, tuple(things), config.size)


def _place(
    rng: np.random.Generator, side: int, size: str, taken: list[tuple[int, int, int, int]]
) -> tuple[int, int, int, int] | None:
    """A free box (2 px apart from the others), its centre off the middle lines; None if full."""
    diameter = max(4, round(DIAMETER[size] * side))
    margin = max(2, round(0.06 * side))  # centre distance from the middle lines
    for _ in range(60):
        x, y = (_off_centre(rng, side, diameter, margin) for _ in range(2))
        box = (x, y, x + diameter, y + diameter)
        if all(_apart(box, other, 2) for other in taken):
            return box
    return None


def _off_centre(rng: np.random.Generator, side: int, diameter: int, margin: int) -> int:
    """Top-left coordinate in the image, with the centre at least ``margin`` from the middle."""
    low, high = 1, side - diameter - 1
    while True:
        start = int(rng.integers(low, high + 1))
        if abs(start + diameter / 2 - side / 2) >= margin:
            return start


def _apart(a: tuple[int, ...], b: tuple[int, ...], gap: int) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def render(scene: Scene, rng: np.random.Generator, quality: int = 90) -> bytes:
    """The scene as JPEG bytes (deterministic given the generator's state)."""
    big = scene.size * SUPERSAMPLE
    background = Image.fromarray(_background(scene, rng, scene.size))
    canvas = background.resize((big, big), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(canvas)
    for thing in scene.things:
        jitter = rng.integers(-12, 13, size=3)
        colour = tuple(int(v) for v in np.clip(np.array(PALETTE[thing.colour]) + jitter, 0, 255))
        _draw_shape(draw, thing, colour)
    image = canvas.resize((scene.size, scene.size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _muted(rng: np.random.Generator) -> np.ndarray:
    """A low-saturation background colour (grey level plus a small tint)."""
    return np.clip(rng.integers(80, 200) + rng.integers(-18, 19, size=3), 0, 255).astype(np.float32)


def _background(scene: Scene, rng: np.random.Generator, side: int) -> np.ndarray:
    """``side x side x 3`` uint8 background of the scene's kind."""
    first, second = _muted(rng), _muted(rng)
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) / side
    angle = rng.uniform(0, math.pi)
    along = xs * math.cos(angle) + ys * math.sin(angle)
    kind = scene.background
    if kind == "noise":
        mix = np.zeros_like(xs)
    elif kind == "gradient":
        mix = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    elif kind == "stripes":
        mix = (np.sin(along * 2 * math.pi * rng.uniform(3, 7)) > 0).astype(np.float32)
    elif kind == "checks":
        cells = int(rng.integers(4, 9))
        mix = ((np.floor(xs * cells) + np.floor(ys * cells)) % 2).astype(np.float32)
    else:  # blotches: a coarse random grid, smoothly upsampled
        coarse = Image.fromarray((rng.random((5, 5)) * 255).astype(np.uint8))
        mix = np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC)) / 255.0
    pixels = first + (second - first) * mix[..., None]
    noise = rng.standard_normal(pixels.shape, dtype=np.float32) * (6 if kind == "noise" else 3)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def _draw_shape(draw: ImageDraw.ImageDraw, thing: Thing, colour: tuple[int, ...]) -> None:
    x1, y1, x2, y2 = (v * SUPERSAMPLE for v in thing.box)
    box = (x1, y1, x2 - 1, y2 - 1)
    if thing.shape == "box":
        draw.rectangle(box, fill=colour)
    elif thing.shape == "ball":
        draw.ellipse(box, fill=colour)
    elif thing.shape == "pyramid":
        draw.polygon([((x1 + x2) / 2, y1), (x2 - 1, y2 - 1), (x1, y2 - 1)], fill=colour)
    else:
        draw.ellipse(box, outline=colour, width=max(2, round((x2 - x1) * 0.22)))


def outline(thing: Thing) -> list[list[list[float]]]:
    """VCR-style ``segms`` entry: polygons of ``[x, y]`` points (a ring: outer and inner)."""
    x1, y1, x2, y2 = thing.box
    if thing.shape == "box":
        return [[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]
    if thing.shape == "pyramid":
        return [[[(x1 + x2) / 2, y1], [x2, y2], [x1, y2]]]
    (cx, cy), radius = thing.centre, (x2 - x1) / 2
    radii = [radius, radius * 0.56] if thing.shape == "ring" else [radius]
    return [_circle(cx, cy, r) for r in radii]


def _circle(cx: float, cy: float, radius: float, points: int = 12) -> list[list[float]]:
    steps = (2 * math.pi * k / points for k in range(points))
    return [
        [round(cx + radius * math.cos(t), 2), round(cy + radius * math.sin(t), 2)] for t in steps
    ]
