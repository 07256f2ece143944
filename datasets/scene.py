"""Procedural aerial-like scenes: a layout of land cover and buildings, and a painter for it.

A scene is generated in two steps so that a second date can share everything that did not change:
:func:`make_layout` draws the geometry (water, roads, vegetation, building footprints and their
heights), :func:`paint` turns a layout into pixels under given acquisition conditions (sun
direction, illumination, vegetation season, sensor noise). All rasterisation is vectorised numpy;
the only Python loops run over the few dozen buildings of a scene.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["CLASSES", "Building", "Layout", "Conditions", "footprint", "make_layout", "place_buildings",
           "paint", "smooth_noise", "fractal_noise"]

CLASSES = ("background", "building", "road", "vegetation", "water")
BACKGROUND, BUILDING, ROAD, VEGETATION, WATER = range(len(CLASSES))

_ROOFS = np.array([(178, 84, 62), (150, 150, 155), (215, 212, 205), (95, 92, 96), (120, 140, 165),
                   (196, 160, 120), (70, 80, 70)], dtype=np.float32)
_GROUNDS = np.array([(150, 138, 112), (128, 126, 98), (168, 150, 128)], dtype=np.float32)
_GREEN, _DRY = np.array((62, 96, 48), np.float32), np.array((150, 132, 72), np.float32)
_WATER, _ROAD = np.array((38, 62, 78), np.float32), np.array((118, 118, 122), np.float32)


@dataclass(frozen=True)
class Building:
    """A box: centre, footprint length/width (pixels), orientation (radians), height (shadow length), roof."""

    cy: float
    cx: float
    length: float
    width: float
    angle: float
    height: float
    roof: tuple[float, float, float]
    gable: bool


@dataclass
class Layout:
    """Everything about a scene that stays put between two dates unless it really changes."""

    size: int
    water: np.ndarray
    roads: np.ndarray
    vegetation: np.ndarray
    buildings: list[Building]
    ground_tone: np.ndarray  # (3,) base colour of bare ground
    grid_angle: float = 0.0  # street grid orientation (radians); most buildings follow it
    textures: dict[str, np.ndarray] = field(default_factory=dict)

    def classes(self) -> np.ndarray:
        """Class map ``(H, W)`` uint8 with ids indexing :data:`CLASSES`."""
        out = np.full((self.size, self.size), BACKGROUND, np.uint8)
        out[self.vegetation] = VEGETATION
        out[self.water] = WATER
        out[self.roads] = ROAD
        for b in self.buildings:
            box, inside = footprint(b, self.size)
            out[box][inside] = BUILDING
        return out


@dataclass(frozen=True)
class Conditions:
    """How one acquisition sees a layout: the pseudo-changes between two dates live here."""

    sun: float = 0.8  # azimuth (radians) of the shadow direction
    gain: float = 1.0  # global illumination
    gamma: float = 1.0
    season: float = 0.0  # 0 green vegetation, 1 dry/autumn colours
    noise: float = 3.0  # sensor noise standard deviation (digital numbers)


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise in [0, 1]: a ``(cells + 1)^2`` random grid, smoothstep-interpolated to ``size x size``."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    t = np.arange(size, dtype=np.float32) * (cells / size)
    i = t.astype(np.int64)
    f = t - i
    f = f * f * (3 - 2 * f)
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]  # (size, cells + 1)
    return rows[:, i] * (1 - f)[None] + rows[:, i + 1] * f[None]


def fractal_noise(rng: np.random.Generator, size: int, base_cells: int, octaves: int = 4) -> np.ndarray:
    """Sum of value-noise octaves (halving amplitude, doubling frequency), rescaled to [0, 1]."""
    total = sum(0.5**k * smooth_noise(rng, size, base_cells * 2**k) for k in range(octaves))
    return (total - total.min()) / max(float(total.max() - total.min()), 1e-6)


def footprint(b: Building, size: int, grow: float = 0.0) -> tuple[tuple[slice, slice], np.ndarray]:
    """Bounding box of building ``b`` (clipped to the image) and the boolean footprint inside it."""
    r = 0.5 * np.hypot(b.length, b.width) + grow + 1
    y0, y1 = max(int(b.cy - r), 0), min(int(b.cy + r) + 1, size)
    x0, x1 = max(int(b.cx - r), 0), min(int(b.cx + r) + 1, size)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy + 0.5 - b.cy, xx + 0.5 - b.cx
    c, s = np.cos(b.angle), np.sin(b.angle)
    u, v = dx * c + dy * s, -dx * s + dy * c  # along / across the building
    inside = (np.abs(u) <= b.length / 2 + grow) & (np.abs(v) <= b.width / 2 + grow)
    return (slice(y0, y1), slice(x0, x1)), inside


def _road_mask(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """1-3 straight roads; returns the mask and the dominant road direction (for building alignment)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    grid_angle = rng.uniform(-0.3, 0.3) if rng.random() < 0.7 else rng.uniform(0, np.pi)
    mask = np.zeros((size, size), bool)
    for k in range(int(rng.integers(1, 4))):
        theta = grid_angle + (np.pi / 2) * (k % 2) + rng.normal(0, 0.03)
        py, px = rng.uniform(0.15, 0.85, 2) * size
        half = rng.uniform(2.5, 5.5) * size / 256
        mask |= np.abs((xx - px) * np.sin(theta) - (yy - py) * np.cos(theta)) < half
    return mask, grid_angle


def _water_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """A lake (thresholded low-frequency noise) and/or a meandering river, each drawn at random."""
    mask = np.zeros((size, size), bool)
    if rng.random() < 0.45:
        field_ = smooth_noise(rng, size, 3)
        mask |= field_ > np.quantile(field_, 1 - rng.uniform(0.04, 0.14))
    if rng.random() < 0.35:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        if rng.random() < 0.5:
            yy, xx = xx, yy
        amplitude, frequency, phase = rng.uniform(4, 20), rng.uniform(3, 9), rng.uniform(0, 6)
        centre = rng.uniform(0.2, 0.8) * size + amplitude * np.sin(xx / size * frequency + phase)
        mask |= np.abs(yy - centre) < rng.uniform(5, 11) * size / 256
    return mask


def place_buildings(rng: np.random.Generator, free: np.ndarray, count: int, angle: float) -> list[Building]:
    """Up to ``count`` new buildings on the ``free`` pixels, 3 px apart; most aligned with ``angle``, some rotated."""
    size, scale = free.shape[0], free.shape[0] / 256
    free = free.copy()
    placed: list[Building] = []
    for _ in range(count * 6):
        if len(placed) == count:
            break
        length = rng.uniform(10, 38) * scale
        rotated = rng.random() < 0.3
        b = Building(
            cy=rng.uniform(0, size), cx=rng.uniform(0, size), length=length,
            width=length * rng.uniform(0.45, 1.0),
            angle=rng.uniform(0, np.pi) if rotated else angle + rng.normal(0, 0.02),
            height=rng.uniform(2, 9) * scale, roof=tuple(_ROOFS[rng.integers(len(_ROOFS))] * rng.uniform(0.85, 1.15)),
            gable=bool(rng.random() < 0.5),
        )
        box, grown = footprint(b, size, grow=3)
        _, inside = footprint(b, size)
        if inside.sum() < 0.6 * b.length * b.width or not free[box][grown].all():
            continue  # mostly outside the image, or on water / road / another building
        free[box][grown] = False
        placed.append(b)
    return placed


def make_layout(rng: np.random.Generator, size: int) -> Layout:
    """Draw a scene: water, roads, vegetation cover, buildings, and the textures that paint them."""
    water = _water_mask(rng, size)
    roads, angle = _road_mask(rng, size)
    veg_field = fractal_noise(rng, size, 3)
    vegetation = (veg_field > np.quantile(veg_field, 1 - rng.uniform(0.2, 0.45))) & ~water & ~roads
    layout = Layout(size, water, roads, vegetation, [], _GROUNDS[rng.integers(len(_GROUNDS))].copy(), angle)
    layout.textures = {
        "ground": fractal_noise(rng, size, 4),
        "crowns": smooth_noise(rng, size, max(size // 5, 2)),
        "grain": rng.random((size, size), dtype=np.float32),
    }
    layout.buildings = place_buildings(rng, ~(water | roads), int(rng.integers(8, 28)), angle)
    return layout


def _shadow(layout: Layout, sun: float) -> np.ndarray:
    """Cast shadows: each footprint swept along the sun azimuth over its height, minus the buildings."""
    size = layout.size
    shadow = np.zeros((size, size), bool)
    roofs = np.zeros((size, size), bool)
    for b in layout.buildings:
        box, inside = footprint(b, size)
        roofs[box] |= inside
        for t in np.linspace(0.25, 1.0, 4):
            moved = replace(b, cy=b.cy + t * b.height * np.sin(sun), cx=b.cx + t * b.height * np.cos(sun))
            box_m, inside_m = footprint(moved, size)
            shadow[box_m] |= inside_m
    return shadow & ~roofs


def paint(layout: Layout, conditions: Conditions, rng: np.random.Generator) -> np.ndarray:
    """Render ``layout`` as seen under ``conditions``: ``(H, W, 3)`` uint8, with fresh sensor noise from ``rng``."""
    tex = layout.textures
    img = layout.ground_tone * (0.78 + 0.4 * tex["ground"])[..., None]
    veg_colour = (1 - conditions.season) * _GREEN + conditions.season * _DRY
    crowns = 0.7 + 0.45 * tex["crowns"] + 0.12 * tex["grain"]
    img[layout.vegetation] = veg_colour * crowns[layout.vegetation][:, None]
    img[layout.water] = _WATER * (0.92 + 0.12 * tex["ground"][layout.water])[:, None]
    img[layout.roads] = _ROAD * (0.93 + 0.1 * tex["grain"][layout.roads])[:, None]
    for b in layout.buildings:
        box, inside = footprint(b, layout.size)
        shade = np.ones(inside.shape, np.float32)
        if b.gable:  # two roof planes lit differently
            yy, xx = np.mgrid[box]
            across = -(xx + 0.5 - b.cx) * np.sin(b.angle) + (yy + 0.5 - b.cy) * np.cos(b.angle)
            shade = np.where(across > 0, 1.12, 0.86).astype(np.float32)
        region = img[box]
        region[inside] = (np.array(b.roof, np.float32) * shade[..., None])[inside]
    img[_shadow(layout, conditions.sun)] *= 0.5
    # Optics: a 3x3 binomial blur softens the rasterised edges.
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    img = (pad[:-2] + 2 * pad[1:-1] + pad[2:]) / 4
    img = (img[:, :-2] + 2 * img[:, 1:-1] + img[:, 2:]) / 4
    img = 255 * (np.clip(img * conditions.gain, 0, 255) / 255) ** conditions.gamma
    img += rng.normal(0, conditions.noise, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
