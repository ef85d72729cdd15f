"""synthfaces: procedural frontal cartoon faces whose generating factors are known.

The ground truth of the project: every image comes with the factor vector that made it,
so every latent-space method can be scored by numbers (does a path change one factor and
nothing else? does a projection recover the factors?).

Rendering is vectorised PyTorch on any device and deterministic from a seed. Each shape is
a signed distance field turned into anti-aliased coverage (a linear ramp one pixel wide),
and layers are composited back to front: background, long hair, neck, face, shading,
fringe, eyes, brows, nose, mouth, glasses.

Factors are given in [0, 1] (the network-facing scale); FACTORS documents what 0 and 1
mean in the image. `glasses` is binary; all others are continuous and independent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Factor:
    name: str
    low: str
    high: str
    binary: bool = False


FACTORS: tuple[Factor, ...] = (
    Factor("face_width", "narrow face (half-width 0.40 of the image half-size)", "wide face (0.58)"),
    Factor("jaw", "round jaw (elliptic chin)", "square jaw (super-ellipse, exponent 4)"),
    Factor("skin_tone", "light skin", "dark skin"),
    Factor("hair_colour", "black", "blond, through brown and auburn"),
    Factor("hair_length", "short hair (ends at the ears)", "long hair (to the bottom edge)"),
    Factor("fringe", "no fringe (forehead bare)", "full fringe down to the brows"),
    Factor("eye_size", "small eyes (radius 0.07)", "large eyes (radius 0.13)"),
    Factor("eye_spacing", "close eyes (centres 0.15 from the midline)", "wide eyes (0.27)"),
    Factor("eye_openness", "half-closed eyes (35% open)", "wide open eyes"),
    Factor("iris_colour", "brown iris", "blue iris, through green"),
    Factor("brow_height", "low brows (close to the eyes)", "raised brows"),
    Factor("nose_length", "short nose (0.06)", "long nose (0.30)"),
    Factor("mouth_width", "narrow mouth (half-width 0.12)", "wide mouth (0.30)"),
    Factor("smile", "frown (corners down)", "smile (corners up)"),
    Factor("mouth_open", "closed mouth", "open mouth"),
    Factor("glasses", "no glasses", "round glasses", binary=True),
    Factor("yaw", "head turned to the image left", "head turned to the image right"),
    Factor("roll", "head tilted -15 degrees", "head tilted +15 degrees"),
    Factor("background_hue", "red-orange background", "violet background (hue 0 to 0.8)"),
    Factor("light", "lit from the image left", "lit from the image right"),
)
FACTOR_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)
NUM_FACTORS = len(FACTORS)
BINARY = torch.tensor([f.binary for f in FACTORS])
_IDX = {name: i for i, name in enumerate(FACTOR_NAMES)}


def sample_factors(n: int, seed: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """n factor vectors [n, NUM_FACTORS]: continuous factors U[0, 1], glasses Bernoulli(0.5)."""
    g = torch.Generator().manual_seed(seed)
    f = torch.rand(n, NUM_FACTORS, generator=g)
    f[:, BINARY] = (f[:, BINARY] < 0.5).float()
    return f.to(device)


def sample(n: int, seed: int, resolution: int = 64, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(images [n, 3, R, R] in [-1, 1], factors [n, NUM_FACTORS]), deterministic from the seed."""
    factors = sample_factors(n, seed, device)
    return render(factors, resolution), factors


def _lerp(a: float, b: float, t: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t


def _palette(t: torch.Tensor, colours: list[tuple[float, float, float]]) -> torch.Tensor:
    """Piecewise-linear colour ramp through `colours`; t [N] in [0, 1] -> [N, 3]."""
    c = torch.tensor(colours, dtype=t.dtype, device=t.device)
    x = t.clamp(0, 1) * (len(colours) - 1)
    i = x.floor().long().clamp(max=len(colours) - 2)
    frac = (x - i).unsqueeze(1)
    return c[i] * (1 - frac) + c[i + 1] * frac


def _hsv_to_rgb(h: torch.Tensor, s: float, v: float) -> torch.Tensor:
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


class _Canvas:
    """Coordinates and compositing for a batch: x right, y down, both in [-1, 1]."""

    def __init__(self, n: int, resolution: int, device: torch.device) -> None:
        lin = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) / resolution * 2 - 1
        self.y, self.x = torch.meshgrid(lin, lin, indexing="ij")
        self.x = self.x.expand(n, -1, -1)
        self.y = self.y.expand(n, -1, -1)
        self.px = 2.0 / resolution  # one pixel in these units
        self.rgb = torch.zeros(n, 3, resolution, resolution, device=device)

    def coverage(self, sdf: torch.Tensor) -> torch.Tensor:
        return (0.5 - sdf / self.px).clamp(0, 1)

    def paint(self, alpha: torch.Tensor, colour: torch.Tensor) -> None:
        """Composite a colour [N, 3] (or per-pixel [N, 3, H, W]) with coverage alpha [N, H, W]."""
        if colour.ndim == 2:
            colour = colour[:, :, None, None]
        a = alpha.unsqueeze(1)
        self.rgb = self.rgb * (1 - a) + colour * a


def _col(v: torch.Tensor) -> torch.Tensor:
    return v[:, None, None]


def _ellipse(x: torch.Tensor, y: torch.Tensor, cx, cy, rx, ry) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Approximate signed distance to an axis-aligned ellipse (exact for circles)."""
    dx, dy = (x - cx) / rx, (y - cy) / ry
    r = torch.sqrt(dx * dx + dy * dy + 1e-12)
    return (r - 1) * torch.minimum(torch.as_tensor(rx, device=x.device), torch.as_tensor(ry, device=x.device))


def _superellipse(x: torch.Tensor, y: torch.Tensor, cx, cy, rx, ry, p) -> torch.Tensor:  # type: ignore[no-untyped-def]
    dx, dy = ((x - cx) / rx).abs(), ((y - cy) / ry).abs()
    r = (dx.pow(p) + dy.pow(p) + 1e-12).pow(1 / p)
    return (r - 1) * torch.minimum(rx, ry)


def _segment(x, y, ax, ay, bx, by, radius) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Signed distance to a capsule (segment a-b with a radius)."""
    pax, pay = x - ax, y - ay
    bax, bay = bx - ax, by - ay
    h = ((pax * bax + pay * bay) / (bax * bax + bay * bay + 1e-12)).clamp(0, 1)
    return torch.sqrt((pax - bax * h) ** 2 + (pay - bay * h) ** 2 + 1e-12) - radius


def _hair_sdf(x, y, hair_length, cy_head, face_cx, face_rx, face_ry) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Long hair behind the head (a rounded slab from the crown down to the hair length) and the crown."""
    hair_bottom = _col(_lerp(0.05, 1.15, hair_length))
    hair_top = cy_head - face_ry - 0.10
    corner = 0.18
    hx = (x - face_cx).abs() - (face_rx + 0.10 - corner)
    hy = torch.maximum(hair_top + corner - y, y - hair_bottom + corner)
    back_hair = torch.maximum(hx, hy).clamp(max=0) + torch.sqrt(hx.clamp(min=0) ** 2 + hy.clamp(min=0) ** 2) - corner
    crown = _ellipse(x, y, face_cx, cy_head - 0.08, face_rx + 0.10, face_ry + 0.04)
    return torch.minimum(back_hair, crown)


MIN_RESOLUTION = 16  # below it the eyes and mouth are under a pixel


def render(factors: torch.Tensor, resolution: int = 64) -> torch.Tensor:
    """Images [N, 3, R, R] in [-1, 1] from factors [N, NUM_FACTORS] in [0, 1]."""
    if factors.ndim != 2 or factors.shape[1] != NUM_FACTORS:
        raise ValueError(f"factors must have shape [N, {NUM_FACTORS}], got {list(factors.shape)}")
    if resolution < MIN_RESOLUTION:
        raise ValueError(f"resolution must be at least {MIN_RESOLUTION}, got {resolution}")
    f = factors.float().clamp(0, 1)
    n = f.shape[0]
    F = {name: f[:, i] for name, i in _IDX.items()}
    cv = _Canvas(n, resolution, f.device)
    x0, y0 = cv.x, cv.y

    # Head pose: roll rotates the whole head about its centre; yaw shifts the features
    # sideways and narrows the face a little (a frontal cartoon's cue for turning).
    roll = _col(_lerp(-15.0, 15.0, F["roll"]) * math.pi / 180)
    yaw = _col(_lerp(-1.0, 1.0, F["yaw"]))
    cy_head = 0.05
    xr = x0 * torch.cos(roll) + (y0 - cy_head) * torch.sin(roll)
    yr = -x0 * torch.sin(roll) + (y0 - cy_head) * torch.cos(roll) + cy_head
    x, y = xr, yr

    # Background: hue ramp with a horizontal light gradient.
    light = _col(_lerp(-1.0, 1.0, F["light"]))
    bg = _hsv_to_rgb(F["background_hue"] * 0.8, 0.45, 0.85)
    cv.rgb = bg[:, :, None, None] * (1 + 0.12 * light.unsqueeze(1) * x0.unsqueeze(1))

    face_rx = _col(_lerp(0.40, 0.58, F["face_width"])) * (1 - 0.08 * yaw.abs())
    face_ry = torch.full_like(face_rx, 0.66)
    face_cx = 0.10 * yaw
    skin = _palette(F["skin_tone"], [(0.98, 0.86, 0.74), (0.87, 0.66, 0.50), (0.62, 0.42, 0.28), (0.36, 0.23, 0.15)])
    hair = _palette(F["hair_colour"], [(0.08, 0.07, 0.07), (0.35, 0.20, 0.10), (0.62, 0.28, 0.12), (0.93, 0.80, 0.45)])

    # Long hair behind the head: a rounded slab from the crown down to the hair length.
    cv.paint(cv.coverage(_hair_sdf(x, y, F["hair_length"], cy_head, face_cx, face_rx, face_ry)), hair)

    # Neck and face. The lower half of the face is a super-ellipse: jaw 0 round, 1 square.
    neck = _segment(x, y, face_cx, cy_head + 0.4, face_cx, 1.3, _col(0.17 + 0.05 * F["face_width"]))
    shade = (1 + 0.18 * light * (x - face_cx) / face_rx).unsqueeze(1)
    cv.paint(cv.coverage(neck), skin * 0.85)
    p = _col(_lerp(2.0, 4.0, F["jaw"]))
    upper = _ellipse(x, y, face_cx, cy_head, face_rx, face_ry)
    lower = _superellipse(x, y, face_cx, cy_head, face_rx, face_ry, p)
    face_sdf = torch.where(y < cy_head, upper, lower)
    cv.paint(cv.coverage(face_sdf), skin[:, :, None, None] * shade)

    # Feature layout, relative to the face centre, shifted by yaw.
    fx = face_cx + 0.14 * yaw
    eye_y = cy_head - 0.10
    spacing = _col(_lerp(0.15, 0.27, F["eye_spacing"])) * (face_rx / 0.49)
    eye_r = _col(_lerp(0.07, 0.13, F["eye_size"]))
    open_ = _col(_lerp(0.35, 1.0, F["eye_openness"]))

    # Fringe: hair over the forehead, inside the face, above a line that comes down to the brows.
    fringe_line = _col(_lerp(cy_head - 0.66 * 0.75, eye_y - 0.21, F["fringe"]))
    fringe_line = fringe_line + 0.03 * torch.cos((x - fx) * 9)
    cv.paint(cv.coverage(torch.maximum(face_sdf - 0.02, y - fringe_line)), hair)

    iris = _palette(F["iris_colour"], [(0.36, 0.21, 0.09), (0.25, 0.55, 0.25), (0.20, 0.45, 0.85)])
    brow_y = eye_y - eye_r * open_ - _col(_lerp(0.03, 0.20, F["brow_height"])) - 0.02
    for side in (-1.0, 1.0):
        ex = fx + side * spacing
        white = _ellipse(x, y, ex, eye_y, eye_r, eye_r * open_)
        cv.paint(cv.coverage(white), torch.tensor([[0.97, 0.97, 0.97]], device=f.device).expand(n, 3))
        iris_sdf = torch.maximum(_ellipse(x, y, ex + 0.02 * yaw, eye_y, eye_r * 0.6, eye_r * 0.6), white)
        cv.paint(cv.coverage(iris_sdf), iris)
        pupil = torch.maximum(_ellipse(x, y, ex + 0.02 * yaw, eye_y, eye_r * 0.27, eye_r * 0.27), white)
        cv.paint(cv.coverage(pupil), torch.zeros(n, 3, device=f.device))
        brow = _segment(x, y, ex - side * 0.02 - 0.08, brow_y + 0.01, ex - side * 0.02 + 0.08, brow_y - 0.01, 0.022)
        cv.paint(cv.coverage(brow), hair * 0.7)

    # Nose: a soft vertical stroke from just below the eyes, darker skin.
    nose_len = _col(_lerp(0.06, 0.30, F["nose_length"]))
    nose_top = eye_y + 0.08
    nose = _segment(x, y, fx + 0.04 * yaw, nose_top, fx + 0.06 * yaw, nose_top + nose_len, 0.032)
    cv.paint(cv.coverage(nose), skin * 0.72)

    # Mouth: a parabola y = my - smile * (1 - (dx / w)^2) stroked, plus an opening below the line.
    mw = _col(_lerp(0.12, 0.30, F["mouth_width"]))
    my = cy_head + 0.36
    curve = _col(_lerp(-0.10, 0.12, F["smile"]))
    dx = (x - fx) / mw
    centre_y = my + curve * (1 - dx.clamp(-1, 1) ** 2) - curve
    lip = torch.maximum((y - centre_y).abs() - 0.028, dx.abs() - 1) * torch.minimum(mw, torch.ones_like(mw))
    opening = _col(_lerp(0.0, 0.14, F["mouth_open"]))
    open_sdf = torch.maximum(torch.maximum(y - (centre_y + opening), centre_y - y), dx.abs() * mw - mw * 0.85)
    cv.paint(cv.coverage(open_sdf), torch.tensor([[0.35, 0.05, 0.08]], device=f.device).expand(n, 3))
    cv.paint(cv.coverage(lip), torch.tensor([[0.65, 0.18, 0.20]], device=f.device).expand(n, 3))

    # Glasses: two rings around the eyes and a bridge.
    g = F["glasses"]
    if bool((g > 0.5).any()):
        ring_r = eye_r + 0.05
        rings = None
        for side in (-1.0, 1.0):
            ex = fx + side * spacing
            ring = (_ellipse(x, y, ex, eye_y, ring_r, ring_r).abs() - 0.014)
            rings = ring if rings is None else torch.minimum(rings, ring)
        bridge = _segment(x, y, fx - spacing + ring_r, eye_y, fx + spacing - ring_r, eye_y, 0.013)
        glasses = torch.minimum(rings, bridge)
        # On or off as the factor is binary: painted with opacity g, a face of g = 0.3 had no glasses
        # alone and faint ones in a batch where another face's g passed 0.5 (the guard above).
        cv.paint(cv.coverage(glasses) * _col((g > 0.5).to(x.dtype)), torch.tensor([[0.10, 0.10, 0.12]], device=f.device).expand(n, 3))

    return (cv.rgb.clamp(0, 1) * 2 - 1).contiguous()


REGIONS = ("eyes", "mouth", "hair")


def region_mask(region: str, resolution: int = 64, factors: torch.Tensor | None = None, margin: float = 0.06) -> torch.Tensor:
    """Where a face part lies, from the renderer's geometry: masks [N, R, R] in {0, 1}.

    `factors` [N, NUM_FACTORS] gives the faces (default: one face with every factor at 0.5, no
    glasses, i.e. the average layout). Regions, grown by `margin` (image half-size units):
    "eyes": both eyes with their brows; "mouth": the mouth with room for smile and opening;
    "hair": long hair, crown and the fringe area of the forehead.
    """
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}: use one of {', '.join(REGIONS)}")
    if factors is None:
        factors = torch.full((1, NUM_FACTORS), 0.5)
        factors[:, BINARY] = 0
    f = factors.float().clamp(0, 1)
    F = {name: f[:, i] for name, i in _IDX.items()}
    cv = _Canvas(f.shape[0], resolution, f.device)
    roll = _col(_lerp(-15.0, 15.0, F["roll"]) * math.pi / 180)
    yaw = _col(_lerp(-1.0, 1.0, F["yaw"]))
    cy_head = 0.05
    x = cv.x * torch.cos(roll) + (cv.y - cy_head) * torch.sin(roll)
    y = -cv.x * torch.sin(roll) + (cv.y - cy_head) * torch.cos(roll) + cy_head
    face_rx = _col(_lerp(0.40, 0.58, F["face_width"])) * (1 - 0.08 * yaw.abs())
    face_ry = torch.full_like(face_rx, 0.66)
    face_cx = 0.10 * yaw
    fx = face_cx + 0.14 * yaw
    if region == "eyes":
        eye_y = cy_head - 0.10
        spacing = _col(_lerp(0.15, 0.27, F["eye_spacing"])) * (face_rx / 0.49)
        eye_r = _col(_lerp(0.07, 0.13, F["eye_size"]))
        open_ = _col(_lerp(0.35, 1.0, F["eye_openness"]))
        brow_y = eye_y - eye_r * open_ - _col(_lerp(0.03, 0.20, F["brow_height"])) - 0.02
        inside = torch.zeros_like(x, dtype=torch.bool)
        for side in (-1.0, 1.0):
            ex = fx + side * spacing
            inside |= ((x - ex).abs() < eye_r + 0.03 + margin) & (y > brow_y - 0.03 - margin) & (y < eye_y + eye_r * open_ + margin)
        return inside.float()
    if region == "mouth":
        mw = _col(_lerp(0.12, 0.30, F["mouth_width"]))
        my = cy_head + 0.36
        inside = ((x - fx).abs() < mw + margin) & (y > my - 0.13 - margin) & (y < my + 0.03 + 0.14 + margin)
        return inside.float()
    face = torch.where(y < cy_head, _ellipse(x, y, face_cx, cy_head, face_rx, face_ry),
                       _superellipse(x, y, face_cx, cy_head, face_rx, face_ry, _col(_lerp(2.0, 4.0, F["jaw"]))))
    fringe_line = _col(_lerp(cy_head - 0.66 * 0.75, cy_head - 0.10 - 0.21, F["fringe"]))
    hair = (_hair_sdf(x, y, F["hair_length"], cy_head, face_cx, face_rx, face_ry) < margin) & ~((face < -margin) & (y > fringe_line + margin))
    return hair.float()
