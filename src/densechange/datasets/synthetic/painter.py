"""Procedural aerial-like scenes: a layout of land cover and buildings, and a painter for it.

A scene is generated in two steps so that a second date can share everything that did not change:
:func:`make_layout` draws the geometry (water, roads, paved lots, bare soil, lawns and tree
crowns, building footprints and their heights), :func:`paint` turns a layout into pixels under
given acquisition conditions (sun azimuth and shadow length, view angle, illumination, white
balance, haze, vegetation season, sensor noise). All rasterisation is vectorised numpy; the only
Python loops run over the few dozen buildings of a scene.

The palette is chosen so that colour alone does not find buildings: roofs are greys, browns and
muted reds like the paved lots and bare soil around them, and what tells a roof apart is its
shape, its texture (tile rows, two lit planes) and the shadow it casts, as in real imagery.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = ["CLASSES", "Building", "Layout", "Conditions", "footprint", "make_layout", "place_buildings",
           "paint", "smooth_noise", "fractal_noise", "random_conditions"]

CLASSES = ("background", "building", "road", "vegetation", "water")
BACKGROUND, BUILDING, ROAD, VEGETATION, WATER = range(len(CLASSES))

_ROOFS = np.array([(118, 116, 114), (92, 90, 92), (150, 146, 140), (138, 104, 86), (160, 128, 100), (80, 84, 90),
                   (176, 170, 160), (112, 96, 86), (150, 88, 70), (150, 138, 112), (160, 146, 126), (136, 128, 110)],
                  dtype=np.float32)  # the last three are the colours of bare ground
_GROUNDS = np.array([(150, 138, 112), (128, 122, 100), (160, 146, 126), (136, 130, 118)], dtype=np.float32)
_PAVED = np.array([(158, 156, 150), (104, 104, 106), (134, 130, 124)], dtype=np.float32)
_SOIL = np.array((158, 132, 104), np.float32)
_LAWN, _LAWN_DRY = np.array((92, 122, 64), np.float32), np.array((160, 146, 96), np.float32)
_TREE, _TREE_AUTUMN = np.array((48, 74, 42), np.float32), np.array((112, 90, 52), np.float32)
_WATER, _ROAD = np.array((44, 64, 76), np.float32), np.array((104, 104, 108), np.float32)
_SKY = np.array((0.72, 0.78, 0.95), np.float32)  # colour of the light that still reaches a shadow
_HAZE = np.array((196, 202, 212), np.float32)


@dataclass(frozen=True)
class Building:
    """A box: centre, footprint length/width (pixels), orientation (radians), height (pixels), roof."""

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
    paved: np.ndarray | None = None  # parking lots and yards: background that looks like a flat roof
    soil: np.ndarray | None = None  # bare soil, e.g. a cleared construction site (background)
    paved_tone: np.ndarray | None = None  # (3,) colour of the paved lots

    def classes(self) -> np.ndarray:
        """Class map ``(H, W)`` uint8 with ids indexing :data:`CLASSES`."""
        out = np.full((self.size, self.size), BACKGROUND, np.uint8)
        out[self.vegetation] = VEGETATION
        out[self.water] = WATER
        out[self.roads] = ROAD
        out[self.building_mask()] = BUILDING
        return out

    def building_mask(self) -> np.ndarray:
        """Union of the building footprints ``(H, W)`` bool."""
        return buildings_mask(self.buildings, self.size)

    def free_land(self) -> np.ndarray:
        """Where a new building may stand: not water, road or an existing building."""
        return ~(self.water | self.roads | self.building_mask())


@dataclass(frozen=True)
class Conditions:
    """How one acquisition sees a layout: the pseudo-changes between two dates live here."""

    sun: float = 0.8  # azimuth (radians) of the shadow direction
    shadow_length: float = 1.0  # shadow length per unit of building height (low sun: long shadows)
    shadow_depth: float = 0.5  # brightness left in a shadow (haze and sky light raise it)
    gain: float = 1.0  # global illumination
    gamma: float = 1.0
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # white balance of the sensor
    haze: float = 0.0  # share of the haze colour mixed into every pixel
    season: float = 0.0  # 0 green vegetation, 1 dry / autumn colours
    lean: tuple[float, float] = (0.0, 0.0)  # off-nadir view: roof displacement (dy, dx) per unit of height
    noise: float = 3.0  # sensor noise standard deviation (digital numbers)


def random_conditions(rng: np.random.Generator, sun: float | None = None, season: tuple[float, float] = (0.0, 0.3),
                      strength: float = 1.0) -> Conditions:
    """An acquisition drawn at random; ``strength`` scales how far it strays from a nadir, neutral one."""
    lean_angle = rng.uniform(0, 2 * np.pi)
    lean = strength * rng.uniform(0.0, 0.22)
    return Conditions(
        sun=rng.uniform(0, 2 * np.pi) if sun is None else sun,
        shadow_length=rng.uniform(0.7, 1.6),
        shadow_depth=rng.uniform(0.38, 0.62),
        gain=1 + strength * rng.uniform(-0.2, 0.2),
        gamma=1 + strength * rng.uniform(-0.15, 0.15),
        tint=tuple(float(v) for v in 1 + strength * rng.normal(0, 0.04, 3)),
        haze=strength * rng.uniform(0, 0.18),
        season=rng.uniform(*season),
        lean=(lean * np.sin(lean_angle), lean * np.cos(lean_angle)),
        noise=rng.uniform(2.0, 4.0),
    )


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
    total = sum(0.5**k * smooth_noise(rng, size, min(base_cells * 2**k, size)) for k in range(octaves))
    return (total - total.min()) / max(float(total.max() - total.min()), 1e-6)


def footprint(b: Building, size: int, grow: float = 0.0) -> tuple[tuple[slice, slice], np.ndarray]:
    """Bounding box of building ``b`` (clipped to the image) and the boolean footprint inside it."""
    r = 0.5 * np.hypot(b.length, b.width) + grow + 1
    y0, x0 = min(max(int(b.cy - r), 0), size), min(max(int(b.cx - r), 0), size)
    y1, x1 = max(min(int(b.cy + r) + 1, size), y0), max(min(int(b.cx + r) + 1, size), x0)  # empty when off the image
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - b.cy  # broadcast, no full grids
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - b.cx
    c, s = np.cos(b.angle), np.sin(b.angle)
    u, v = dx * c + dy * s, -dx * s + dy * c  # along / across the building
    inside = (np.abs(u) <= b.length / 2 + grow) & (np.abs(v) <= b.width / 2 + grow)
    return (slice(y0, y1), slice(x0, x1)), inside


def swept_footprint(b: Building, size: int, dy: float, dx: float, start: float = 0.0) -> tuple[tuple[slice, slice], np.ndarray]:
    """Pixels covered by the footprint of ``b`` moved along ``(dy, dx) * t`` for ``t`` in ``[start, 1]``.

    One pass over the bounding box: a pixel is covered when the intervals of ``t`` that put it
    inside the box along and across the building overlap (a cast shadow, or the walls of an
    off-nadir view).
    """
    r = 0.5 * np.hypot(b.length, b.width) + 1
    y0 = min(max(int(b.cy + min(start * dy, dy) - r), 0), size)
    x0 = min(max(int(b.cx + min(start * dx, dx) - r), 0), size)
    y1 = max(min(int(b.cy + max(start * dy, dy) + r) + 1, size), y0)
    x1 = max(min(int(b.cx + max(start * dx, dx) + r) + 1, size), x0)
    py = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - b.cy
    px = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - b.cx
    c, s = np.cos(b.angle), np.sin(b.angle)
    lo, hi = np.full((y1 - y0, x1 - x0), start, np.float32), np.ones((y1 - y0, x1 - x0), np.float32)
    for pos, step, half in ((px * c + py * s, dx * c + dy * s, b.length / 2), (-px * s + py * c, -dx * s + dy * c, b.width / 2)):
        if abs(step) < 1e-6:
            inside = np.abs(pos) <= half
            lo, hi = np.where(inside, lo, 2.0), np.where(inside, hi, -1.0)
        else:
            t0, t1 = (pos - half) / step, (pos + half) / step
            lo, hi = np.maximum(lo, np.minimum(t0, t1)), np.minimum(hi, np.maximum(t0, t1))
    return (slice(y0, y1), slice(x0, x1)), lo <= hi


def buildings_mask(buildings: list[Building], size: int) -> np.ndarray:
    """Union of the footprints of ``buildings``."""
    mask = np.zeros((size, size), bool)
    for b in buildings:
        box, inside = footprint(b, size)
        mask[box] |= inside
    return mask


def _moved(b: Building, dy: float, dx: float) -> Building:
    return replace(b, cy=b.cy + dy, cx=b.cx + dx)


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


def rectangles(rng: np.random.Generator, size: int, count: int, angle: float, side: tuple[float, float]) -> np.ndarray:
    """``count`` rectangles aligned with ``angle``, sides drawn from ``side`` (fractions of the image)."""
    mask = np.zeros((size, size), bool)
    for _ in range(count):
        length, width = rng.uniform(*side, 2) * size
        rect = Building(rng.uniform(0, size), rng.uniform(0, size), length, width, angle, 0.0, (0, 0, 0), False)
        box, inside = footprint(rect, size)
        mask[box] |= inside
    return mask


def place_buildings(rng: np.random.Generator, free: np.ndarray, count: int, angle: float,
                    region: np.ndarray | None = None, attempts: int = 6) -> list[Building]:
    """Up to ``count`` new buildings on the ``free`` pixels, 3 px apart; most aligned with ``angle``, some rotated.

    With ``region`` (bool mask) the centres are drawn among its pixels: a cluster, like a new
    housing development.
    """
    size, scale = free.shape[0], free.shape[0] / 256
    free = free.copy()
    centres = np.argwhere(region) if region is not None and region.any() else None
    placed: list[Building] = []
    for _ in range(count * attempts):
        if len(placed) == count:
            break
        length = rng.uniform(10, 34) * scale
        rotated = rng.random() < 0.2
        if centres is not None:
            cy, cx = centres[rng.integers(len(centres))] + rng.uniform(0, 1, 2)
        else:
            cy, cx = rng.uniform(0, size, 2)
        b = Building(
            cy=float(cy), cx=float(cx), length=length, width=length * rng.uniform(0.45, 1.0),
            angle=rng.uniform(0, np.pi) if rotated else angle + rng.normal(0, 0.02),
            height=rng.uniform(2, 8) * scale, roof=tuple(_ROOFS[rng.integers(len(_ROOFS))] * rng.uniform(0.88, 1.12)),
            gable=bool(rng.random() < 0.55),
        )
        box, grown = footprint(b, size, grow=3)
        if not free[box][grown].all():
            continue  # on water / road / another building
        if footprint(b, size)[1].sum() < 0.6 * b.length * b.width:
            continue  # mostly outside the image
        free[box][grown] = False
        placed.append(b)
    return placed


def make_layout(rng: np.random.Generator, size: int) -> Layout:
    """Draw a scene: water, roads, vegetation, paved lots, buildings, and the textures that paint them."""
    water = _water_mask(rng, size)
    roads, angle = _road_mask(rng, size)
    veg_field = fractal_noise(rng, size, 3)
    vegetation = (veg_field > np.quantile(veg_field, 1 - rng.uniform(0.2, 0.45))) & ~water & ~roads
    paved = rectangles(rng, size, int(rng.integers(1, 6)), angle, (0.06, 0.2)) & ~water & ~roads & ~vegetation
    layout = Layout(size, water, roads, vegetation, [], _GROUNDS[rng.integers(len(_GROUNDS))].copy(), angle,
                    paved=paved, soil=np.zeros((size, size), bool), paved_tone=_PAVED[rng.integers(len(_PAVED))].copy())
    layout.textures = make_textures(rng, size)
    layout.buildings = place_buildings(rng, ~(water | roads), int(rng.integers(8, 28)), angle)
    layout.paved |= driveways(rng, layout.buildings, size) & ~water & ~roads
    return layout


def driveways(rng: np.random.Generator, buildings: list[Building], size: int) -> np.ndarray:
    """A paved yard or driveway beside about half of the buildings: background that looks like a flat roof."""
    mask = np.zeros((size, size), bool)
    for b in buildings:
        if rng.random() < 0.55:
            side = rng.choice((-1.0, 1.0)) * (b.width / 2 + rng.uniform(2.0, 5.0))
            pad = replace(b, cy=b.cy + side * np.cos(b.angle), cx=b.cx - side * np.sin(b.angle),
                          length=b.length * rng.uniform(0.3, 0.8), width=rng.uniform(3.0, 7.0) * size / 256 + 2)
            box, inside = footprint(pad, size)
            mask[box] |= inside
    return mask


def make_textures(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
    """Noise fields that stay with the ground between dates: soil, tree crowns, grain, paving."""
    crown_cells = max(size // 4, 2)
    return {
        "ground": fractal_noise(rng, size, 4, octaves=5),
        "crowns": smooth_noise(rng, size, crown_cells),
        "trees": smooth_noise(rng, size, max(size // 24, 2)),
        "grain": rng.random((size, size), dtype=np.float32),
        "fine": fractal_noise(rng, size, max(size // 16, 2), octaves=3),
    }


def _roof_shade(b: Building, box: tuple[slice, slice], sun: float, rng: np.random.Generator) -> np.ndarray:
    """Brightness of a roof: tile rows across the slope, two planes lit by the sun (gable), a dark rim."""
    dy = np.arange(box[0].start, box[0].stop, dtype=np.float32)[:, None] + 0.5 - b.cy
    dx = np.arange(box[1].start, box[1].stop, dtype=np.float32)[None, :] + 0.5 - b.cx
    c, s = np.cos(b.angle), np.sin(b.angle)
    along, across = dx * c + dy * s, -dx * s + dy * c
    shade = 1 + 0.08 * np.sin(2 * np.pi * across / 2.5)  # rows of tiles or seams
    if b.gable:  # the plane facing away from the shadow (towards the sun) is lit
        facing = np.cos(sun - (b.angle + np.pi / 2))
        shade = shade * np.where(across > 0, 1 - 0.14 * facing, 1 + 0.14 * facing)
        shade = shade * np.where(np.abs(across) < 0.8, 1.08, 1.0)  # the ridge
    else:
        rim = (np.abs(across) > b.width / 2 - 1.0) | (np.abs(along) > b.length / 2 - 1.0)
        shade = shade * np.where(rim, 0.82, 1.0)  # parapet
    return (shade * (1 + 0.07 * rng.standard_normal(shade.shape))).astype(np.float32)


def _shadow(layout: Layout, c: Conditions) -> np.ndarray:
    """Soft cast shadows ``(H, W)`` in [0, 1]: each footprint swept along the sun over its height, minus roofs."""
    size = layout.size
    shadow = np.zeros((size, size), np.float32)
    roofs = np.zeros((size, size), bool)
    for b in layout.buildings:
        box, inside = footprint(b, size)
        roofs[box] |= inside
        reach = b.height * c.shadow_length
        box_m, inside_m = swept_footprint(b, size, reach * np.sin(c.sun), reach * np.cos(c.sun), start=0.15)
        shadow[box_m] = np.maximum(shadow[box_m], inside_m)
    return _blur(shadow * ~roofs)


def _tree_shadow(crowns: np.ndarray, c: Conditions, size: int) -> np.ndarray:
    """Shadows of tree crowns: the crown mask moved a few pixels along the sun, off the crowns."""
    reach = 3.0 * c.shadow_length * size / 256
    dy, dx = int(round(reach * np.sin(c.sun))), int(round(reach * np.cos(c.sun)))
    moved = np.roll(crowns, (dy, dx), axis=(0, 1)).astype(np.float32)
    return _blur(moved * ~crowns)


def _clutter(img: np.ndarray, where: np.ndarray, rng: np.random.Generator) -> None:
    """Cars and other small objects on roads and lots, drawn afresh for every date (in place)."""
    size = img.shape[0]
    spots = np.argwhere(where)
    if len(spots) == 0:
        return
    n = rng.binomial(len(spots), 0.004)
    centre = spots[rng.integers(len(spots), size=n)]
    colours = rng.choice(np.array([(30, 30, 34), (200, 200, 205), (150, 30, 28), (60, 70, 110), (120, 120, 125)],
                                  np.float32), n)
    for oy, ox in ((0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (1, 2)):  # 2 x 3 pixel objects
        img[np.clip(centre[:, 0] + oy, 0, size - 1), np.clip(centre[:, 1] + ox, 0, size - 1)] = colours


def _blur(x: np.ndarray) -> np.ndarray:
    """3x3 binomial blur of a 2-D or 3-D (H, W, C) array, edges repeated."""
    pad = ((1, 1), (1, 1)) + ((0, 0),) * (x.ndim - 2)
    p = np.pad(x, pad, mode="edge")
    p = (p[:-2] + 2 * p[1:-1] + p[2:]) / 4
    return (p[:, :-2] + 2 * p[:, 1:-1] + p[:, 2:]) / 4


def paint(layout: Layout, conditions: Conditions, rng: np.random.Generator) -> np.ndarray:
    """Render ``layout`` as seen under ``conditions``: ``(H, W, 3)`` uint8, with fresh sensor noise from ``rng``."""
    c, tex, size = conditions, layout.textures, layout.size
    grain = tex["grain"] - 0.5
    moisture = 0.88 + 0.24 * smooth_noise(rng, size, 3)  # soil wetness differs from date to date
    ground_shift = (1 + 0.08 * (c.season - 0.5)) * moisture  # dry soil is brighter
    img = layout.ground_tone * (ground_shift * (0.68 + 0.45 * tex["ground"] + 0.32 * grain + 0.2 * tex["fine"]))[..., None]
    if layout.soil is not None and layout.soil.any():
        img[layout.soil] = _SOIL * (moisture * (0.78 + 0.3 * tex["fine"] + 0.3 * grain))[layout.soil][:, None]
    if layout.paved is not None and layout.paved.any():
        tone = layout.paved_tone if layout.paved_tone is not None else _PAVED[0]
        img[layout.paved] = tone * (0.9 + 0.08 * tex["ground"] + 0.14 * grain)[layout.paved][:, None]
    # Vegetation: lawns, and tree crowns where the tree field is high; both change colour with the season.
    veg = layout.vegetation
    crowns = veg & (tex["trees"] * 0.6 + tex["crowns"] * 0.4 > 0.5)
    lawn_colour = (1 - c.season) * _LAWN + c.season * _LAWN_DRY
    tree_colour = (1 - 0.7 * c.season) * _TREE + 0.7 * c.season * _TREE_AUTUMN
    img[veg] = lawn_colour * (moisture * (0.82 + 0.25 * tex["fine"] + 0.25 * grain))[veg][:, None]
    crown_shade = 0.55 + 0.75 * tex["crowns"] + 0.45 * grain
    img[crowns] = tree_colour * crown_shade[crowns][:, None]
    img[layout.water] = _WATER * (0.9 + 0.12 * tex["ground"] + 0.04 * grain)[layout.water][:, None]
    img[layout.roads] = _ROAD * (0.9 + 0.1 * tex["fine"] + 0.16 * grain)[layout.roads][:, None]
    _clutter(img, layout.roads | (layout.paved if layout.paved is not None else False), rng)
    # Shadows fall on the ground before the roofs and walls are drawn over them.
    dark = 1 - (1 - c.shadow_depth * _SKY)[None, None] * np.maximum(_shadow(layout, c), _tree_shadow(crowns, c, size))[..., None]
    img *= dark
    for b in layout.buildings:  # off-nadir view: walls, then the roof displaced by the building's height
        dy, dx = c.lean[0] * b.height, c.lean[1] * b.height
        roof = np.array(b.roof, np.float32)
        if max(abs(dy), abs(dx)) >= 0.5:
            box, inside = swept_footprint(b, size, dy, dx)
            img[box][inside] = roof * 0.62
        box, inside = footprint(_moved(b, dy, dx), size)
        region = img[box]
        region[inside] = (roof * _roof_shade(_moved(b, dy, dx), box, c.sun, rng)[..., None])[inside]
    # Optics (a light blur), then the sensor: illumination, white balance, haze, gamma, noise.
    img = 0.7 * img + 0.3 * _blur(img)
    img = img * c.gain * np.array(c.tint, np.float32)
    img = (1 - c.haze) * img + c.haze * _HAZE
    img = 255 * (np.clip(img, 0, 255) / 255) ** c.gamma
    img += rng.normal(0, c.noise, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
