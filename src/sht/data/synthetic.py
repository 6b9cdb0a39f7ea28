"""Generated faces with exactly known iBUG 68-point landmarks (the project's embedded default data).

A hand-designed 3D template (:data:`MEAN_SHAPE_3D`) is deformed per face (identity: face width and height, jaw
roundness, eye spacing/size/tilt, nose length/width, mouth width, lip thickness, brow height/arch; expression:
mouth opening, smile, brow raise/frown, eye openness), rotated (yaw, pitch, roll), projected with mild
perspective and framed like the real crops (image side = ``framing`` x the larger side of the landmark box).
The landmarks are the projected template points and every feature is drawn *through* them: the skin polygon
follows the jaw points, the sclera polygon the six eye points, the lip polygons the mouth points, the brow
bands the brow points, the nose shading the bridge and the nostril points.

Drawing uses PIL on a supersampled canvas (``s`` x the output size) that is box-reduced to the output size, so
a canvas point ``X`` lands at ``X / s`` (PIL ``resize``/``reduce`` convention). Coordinates follow
:mod:`sht.data.formats`: x right, y down, the image spanning ``[0, W] x [0, H]``.

Pose angles are drawn from a normal with standard deviation ``max / 2`` truncated (by rejection) to
``[-max, max]``; yaw > 0 turns the face towards image-right, pitch > 0 tilts it up, roll > 0 rotates it
clockwise in the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from sht.data.formats import IBUG68, write_pts

__all__ = ["MEAN_SHAPE_3D", "SyntheticFaceConfig", "render_face", "generate", "write_folder"]

# ----------------------------------------------------------------------------------------------------------
# Template
# ----------------------------------------------------------------------------------------------------------

_FLIP = np.asarray(IBUG68.flip)
# Points built on the image-left side (x < 0) and on the midline; the image-right side is their mirror image.
_LEFT = np.array([*range(0, 8), *range(17, 22), 31, 32, *range(36, 42), 48, 49, 50, 58, 59, 60, 61, 67])
_MID = np.array([8, 27, 28, 29, 30, 33, 51, 57, 62, 66])
_RIGHT = _FLIP[_LEFT]

# Identity parameters of the neutral template (template units: outer eye corners ~1 apart, eyes at y = 0).
_ID_DEFAULT: dict[str, float] = {
    "face_w": 0.80,  # half width of the face at the top jaw points
    "jaw_top": 0.03,  # y of jaw points 0 / 16
    "chin_y": 1.18,  # y of the chin (point 8)
    "jaw_sq": 0.8,  # jaw roundness exponent (< 1: squarer)
    "jaw_depth": 0.37,  # how far the jaw sides recede from the chin (z)
    "eye_cx": 0.335,  # half distance between the eye centres
    "eye_w": 0.30,  # eye width (corner to corner)
    "eye_up": 0.062,  # upper-lid height above the corner line
    "eye_lo": 0.042,  # lower-lid depth below the corner line
    "eye_tilt": 0.015,  # outer corner above the inner one by this much
    "brow_y": 0.0,  # brow height offset (negative: higher)
    "brow_arch": 1.0,  # arch multiplier
    "brow_len": 1.0,  # brow overhang beyond the outer eye corner, multiplier
    "nose_len": 0.43,  # y of the nose tip
    "nose_w": 0.14,  # half width of the nostril base
    "nose_z": 0.34,  # nose tip protrusion
    "mouth_y": 0.80,  # y of the closed lip line
    "mouth_w": 0.26,  # half width of the mouth
    "lip_up": 0.085,  # upper lip height
    "lip_lo": 0.10,  # lower lip height
}
_EX_NEUTRAL: dict[str, float] = {
    "open": 0.0,  # mouth opening (template units)
    "smile": 0.0,  # -0.3 (sad) .. 1 (broad smile)
    "brow_l": 0.0,  # brow raise, image-left / image-right
    "brow_r": 0.0,
    "frown": 0.0,  # inner brows down and in
    "eye_l": 1.0,  # eye openness (0 closed .. ~1.3 wide), image-left / image-right
    "eye_r": 1.0,
}


def _half_face(p: dict[str, float], ex: dict[str, float], brow: float, eye_open: float) -> np.ndarray:
    """The 68 points with the image-left half (and the midline) filled in for one side's expression."""
    P = np.zeros((68, 3))
    open_, smile, frown = ex["open"], ex["smile"], ex["frown"]
    sm_pos = max(smile, 0.0)

    # Jaw (0..16): superellipse from the left ear, down the chin, to the right ear.
    phi = np.linspace(0.0, math.pi, 17)
    c, s = np.cos(phi), np.sin(phi)
    P[:17, 0] = -p["face_w"] * np.sign(c) * np.abs(c) ** p["jaw_sq"]
    P[:17, 1] = p["jaw_top"] + (p["chin_y"] - p["jaw_top"]) * s**0.9 + 0.9 * open_ * s**3
    P[:17, 2] = 0.05 - p["jaw_depth"] * np.abs(c) - 0.25 * open_ * s**3
    P[8, 0] = 0.0

    # Brows (17..21, outer -> inner).
    t = np.linspace(0.0, 1.0, 5)
    x_out = p["eye_cx"] + p["eye_w"] / 2 + 0.135 * p["brow_len"]
    x_in = p["eye_cx"] - p["eye_w"] / 2 - 0.065
    by = -0.20 + (-0.27 + 0.20) * t + p["brow_arch"] * np.array([0.0, -0.0575, -0.065, -0.0425, 0.0])
    by += p["brow_y"] - brow * np.array([0.6, 0.85, 1.0, 1.0, 0.9]) + frown * np.array([0, 0, 0.01, 0.025, 0.04])
    P[17:22, 0] = -(x_out + (x_in - x_out) * t) + frown * np.array([0, 0, 0, 0.01, 0.02])
    P[17:22, 1] = by
    P[17:22, 2] = [-0.16, -0.06, 0.01, 0.05, 0.07]

    # Eye (36 outer, 37/38 upper lid, 39 inner, 40/41 lower lid).
    xo, xi = -(p["eye_cx"] + p["eye_w"] / 2), -(p["eye_cx"] - p["eye_w"] / 2)
    yo, yi = -p["eye_tilt"] / 2, p["eye_tilt"] / 2
    lo = p["eye_lo"] * (1.0 - 0.3 * sm_pos)
    up = 0.7 * lo - eye_open * (p["eye_up"] + 0.7 * lo)  # eye_open = 0: lid rests just above the lower lid
    x1, x2 = xo + (xi - xo) / 3, xo + 2 * (xi - xo) / 3
    y1, y2 = yo + (yi - yo) / 3, yo + 2 * (yi - yo) / 3
    P[36] = (xo, yo, -0.13)
    P[37] = (x1, y1 + 0.93 * up, -0.03)
    P[38] = (x2, y2 + up, -0.01)
    P[39] = (xi, yi, -0.05)
    P[40] = (x2, y2 + 0.95 * lo, -0.03)
    P[41] = (x1, y1 + lo, -0.05)

    # Nose: bridge 27..30 (top to tip), nostril base 31..33 (left half).
    nl, nz, nw = p["nose_len"], p["nose_z"], p["nose_w"]
    for k, f in enumerate((0.0, 1 / 3, 2 / 3, 1.0)):
        P[27 + k] = (0.0, -0.01 + (nl + 0.01) * f, 0.10 + (nz - 0.10) * f**0.8)
    P[31] = (-nw, nl + 0.065, 0.30 * nz)
    P[32] = (-0.5 * nw, nl + 0.095, 0.55 * nz)
    P[33] = (0.0, nl + 0.105, 0.62 * nz)

    # Mouth.
    my, lu, ll = p["mouth_y"], p["lip_up"], p["lip_lo"]
    mw = p["mouth_w"] * (1.0 - 0.12 * open_) + 0.03 * sm_pos
    cy = my - 0.06 * smile + 0.2 * open_
    P[48] = (-mw, cy, 0.04)
    P[49] = (-0.62 * mw, my - 0.80 * lu - 0.03 * smile, 0.13)
    P[50] = (-0.24 * mw, my - 1.05 * lu - 0.01 * smile, 0.18)
    P[51] = (0.0, my - 0.92 * lu, 0.20)
    P[59] = (-0.62 * mw, my + 0.78 * ll - 0.025 * smile + 0.85 * open_, 0.12 - 0.25 * open_)
    P[58] = (-0.24 * mw, my + 0.98 * ll + 0.95 * open_, 0.15 - 0.28 * open_)
    P[57] = (0.0, my + ll + open_, 0.16 - 0.3 * open_)
    P[60] = (-(mw - 0.035), cy + 0.002, 0.06)
    P[61] = (-0.38 * mw, my - 0.010 - 0.025 * smile - 0.10 * open_, 0.15)
    P[62] = (0.0, my - 0.010 - 0.10 * open_, 0.17)
    P[67] = (-0.38 * mw, my + 0.008 - 0.02 * smile + 0.9 * open_, 0.14 - 0.25 * open_)
    P[66] = (0.0, my + 0.010 + open_, 0.16 - 0.28 * open_)
    return P


def _build_shape(p: dict[str, float], ex: dict[str, float]) -> np.ndarray:
    """(68, 3) template for identity ``p`` and expression ``ex``; symmetric when the expression is."""
    left = _half_face(p, ex, ex["brow_l"], ex["eye_l"])
    right = _half_face(p, ex, ex["brow_r"], ex["eye_r"])
    P = left.copy()
    P[_RIGHT] = right[_LEFT] * np.array([-1.0, 1.0, 1.0])
    P[_MID] = 0.5 * (left[_MID] + right[_MID])
    return P


MEAN_SHAPE_3D: np.ndarray = _build_shape(_ID_DEFAULT, _EX_NEUTRAL)
MEAN_SHAPE_3D.setflags(write=False)

# ----------------------------------------------------------------------------------------------------------
# Configuration and sampling
# ----------------------------------------------------------------------------------------------------------


@dataclass
class SyntheticFaceConfig:
    """Sampling ranges of :func:`render_face`. Angles are maximum absolute degrees (truncated normal with
    standard deviation ``max / 2``); ``*_prob`` are per-face probabilities; ``identity`` scales all identity
    deformations (0 = the mean template) and ``expression`` all expression amplitudes."""

    image_size: int = 256
    framing: float = 1.8
    yaw: float = 40.0
    pitch: float = 20.0
    roll: float = 25.0
    centre_jitter: float = 0.04
    size_jitter: float = 0.08
    perspective: tuple[float, float] = (5.0, 15.0)  # camera distance range in template units
    identity: float = 1.0
    expression: float = 1.0
    mouth_open_prob: float = 0.35
    mouth_open_max: float = 0.32
    blink_prob: float = 0.05
    gaze: float = 15.0  # max abs gaze angle (degrees)
    glasses_prob: float = 0.12
    beard_prob: float = 0.12
    bangs_prob: float = 0.25
    lipstick_prob: float = 0.12
    blur_max: float = 0.8  # max Gaussian blur radius at 256 px (scaled with image_size)
    noise_max: float = 6.0  # max Gaussian pixel noise (0..255 scale)
    supersample: int = 0  # canvas factor; 0 = automatic (4 below 160 px, else 3)


def _tnormal(rng: np.random.Generator, limit: float) -> float:
    """Normal with std ``limit / 2`` truncated to ``[-limit, limit]`` (rejection)."""
    if limit <= 0:
        return 0.0
    while True:
        v = rng.normal(0.0, limit / 2)
        if abs(v) <= limit:
            return float(v)


def _sample_identity(rng: np.random.Generator, amount: float) -> dict[str, float]:
    spread = {  # half ranges of a uniform jitter around the default
        "face_w": 0.07,
        "jaw_top": 0.04,
        "chin_y": 0.10,
        "jaw_sq": 0.18,
        "jaw_depth": 0.06,
        "eye_cx": 0.025,
        "eye_w": 0.035,
        "eye_up": 0.014,
        "eye_lo": 0.010,
        "eye_tilt": 0.025,
        "brow_y": 0.04,
        "brow_arch": 0.6,
        "brow_len": 0.4,
        "nose_len": 0.06,
        "nose_w": 0.03,
        "nose_z": 0.06,
        "mouth_y": 0.05,
        "mouth_w": 0.045,
        "lip_up": 0.03,
        "lip_lo": 0.03,
    }
    return {k: v + amount * spread.get(k, 0.0) * rng.uniform(-1, 1) for k, v in _ID_DEFAULT.items()}


def _sample_expression(rng: np.random.Generator, cfg: SyntheticFaceConfig) -> dict[str, float]:
    a = cfg.expression
    open_ = rng.uniform(0.02, cfg.mouth_open_max) if rng.random() < cfg.mouth_open_prob else 0.0
    smile = rng.uniform(-0.3, 1.0) if rng.random() < 0.6 else 0.0
    raise_ = rng.uniform(-0.03, 0.07) if rng.random() < 0.5 else 0.0
    asym = rng.uniform(-0.02, 0.02)
    frown = rng.uniform(0.0, 1.0) if rng.random() < 0.15 else 0.0
    if rng.random() < cfg.blink_prob:
        eye = rng.uniform(0.0, 0.25)
    else:
        eye = float(np.clip(rng.normal(1.0, 0.15), 0.55, 1.35))
    eye_asym = rng.uniform(-0.08, 0.08)
    return {
        "open": a * open_,
        "smile": a * smile,
        "brow_l": a * (raise_ + asym),
        "brow_r": a * (raise_ - asym),
        "frown": a * frown,
        "eye_l": 1.0 + a * (eye + eye_asym - 1.0),
        "eye_r": 1.0 + a * (eye - eye_asym - 1.0),
    }


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


# ----------------------------------------------------------------------------------------------------------
# Colours
# ----------------------------------------------------------------------------------------------------------

_SKIN = np.array([(246, 214, 192), (226, 180, 150), (196, 142, 105), (150, 100, 70), (98, 64, 46), (66, 44, 34)])
_HAIR = np.array(
    [
        (22, 18, 16),
        (45, 32, 24),
        (75, 52, 36),
        (110, 80, 52),
        (150, 115, 75),
        (205, 170, 110),
        (135, 62, 32),
        (150, 148, 145),
        (215, 212, 205),
    ]
)
_HAIR_W = np.array([0.25, 0.2, 0.15, 0.1, 0.07, 0.08, 0.05, 0.06, 0.04])
_IRIS = np.array([(80, 50, 28), (48, 30, 18), (70, 110, 150), (80, 110, 65), (105, 115, 120), (115, 90, 45)])
_LIPSTICK = np.array([(165, 25, 45), (200, 70, 95), (115, 35, 60), (150, 60, 45)])


def _lum(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def _col(c: np.ndarray, alpha: int = 255) -> tuple[int, int, int, int]:
    c = np.clip(np.rint(c), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2]), alpha


def _sample_colours(rng: np.random.Generator, lipstick_prob: float) -> dict[str, np.ndarray]:
    t = (len(_SKIN) - 1) * rng.beta(1.3, 1.8)
    i = min(int(t), len(_SKIN) - 2)
    skin = _SKIN[i] + (t - i) * (_SKIN[i + 1] - _SKIN[i]) + rng.normal(0, 6, 3)
    skin *= (1.0, 1.0 + rng.uniform(-0.03, 0.02), 1.0 + rng.uniform(-0.04, 0.03))
    hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_W)] * rng.uniform(0.85, 1.15) + rng.normal(0, 5, 3)
    brow = 0.6 * hair + 0.2 * skin
    if _lum(brow) > 0.55 * _lum(skin):
        brow *= 0.55 * _lum(skin) / max(_lum(brow), 1.0)
    lips = skin * np.array([0.86, 0.6, 0.62]) * rng.uniform(0.85, 1.0)
    if rng.random() < lipstick_prob:
        lips = _LIPSTICK[rng.integers(len(_LIPSTICK))] + rng.normal(0, 8, 3)
    return {
        "skin": np.clip(skin, 0, 255),
        "hair": np.clip(hair, 0, 255),
        "brow": np.clip(brow, 0, 255),
        "lips": np.clip(lips, 0, 255),
        "iris": np.clip(_IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.8, 1.2), 0, 255),
        "sclera": np.clip(np.array([236, 230, 222]) * rng.uniform(0.85, 1.0), 0, 255),
        "clothes": rng.uniform(20, 235, 3),
    }


# ----------------------------------------------------------------------------------------------------------
# Geometry helpers (2D, output pixel coordinates)
# ----------------------------------------------------------------------------------------------------------


def _spline(pts: np.ndarray, n: int = 8, closed: bool = False) -> np.ndarray:
    """Uniform Catmull-Rom curve through ``pts`` (it passes exactly through every point)."""
    pts = np.asarray(pts, dtype=np.float64)
    if closed:
        ext = np.concatenate([pts[-1:], pts, pts[:2]])
    else:
        ext = np.concatenate([2 * pts[:1] - pts[1:2], pts, 2 * pts[-1:] - pts[-2:-1]])
    p0, p1, p2, p3 = ext[:-3], ext[1:-2], ext[2:-1], ext[3:]
    t = np.linspace(0, 1, n, endpoint=False)[None, :, None]
    a, b, c, d = p0[:, None], p1[:, None], p2[:, None], p3[:, None]
    curve = 0.5 * (2 * b + (c - a) * t + (2 * a - 5 * b + 4 * c - d) * t**2 + (3 * b - a - 3 * c + d) * t**3)
    curve = curve.reshape(-1, 2)
    return curve if closed else np.concatenate([curve, pts[-1:]])


def _clip_between(poly: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """Clamp ``poly`` into the region between two curves that share their end points (eye or mouth opening),
    working in the frame whose first axis joins the curves' ends."""
    a, b = upper[0], upper[-1]
    e = b - a
    length = float(np.hypot(*e))
    if length < 1e-6:
        return np.repeat(a[None], len(poly), 0)
    e = e / length
    n = np.array([-e[1], e[0]])

    def local(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = q - a
        return d @ e, d @ n

    uu, uv = local(upper)
    lu, lv = local(lower)
    uu, lu = np.maximum.accumulate(uu), np.maximum.accumulate(lu)
    pu, pv = local(poly)
    pu = np.clip(pu, 0.0, length)
    v1, v2 = np.interp(pu, uu, uv), np.interp(pu, lu, lv)
    pv = np.clip(pv, np.minimum(v1, v2), np.maximum(v1, v2))
    return a + pu[:, None] * e + pv[:, None] * n


def _ellipse_pts(centre: np.ndarray, ax1: np.ndarray, ax2: np.ndarray, n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return centre + np.cos(t)[:, None] * ax1 + np.sin(t)[:, None] * ax2


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------


class _Camera:
    """Head pose + mild perspective + framing: template (head frame) -> output pixel coordinates."""

    def __init__(self, R: np.ndarray, dist: float, k: float = 1.0, t: np.ndarray | None = None) -> None:
        self.R, self.dist, self.k = R, dist, k
        self.t = np.zeros(2) if t is None else t

    def rotate(self, P: np.ndarray) -> np.ndarray:
        return np.asarray(P, dtype=np.float64) @ self.R.T

    def project_rotated(self, Q: np.ndarray) -> np.ndarray:
        f = self.dist / (self.dist - Q[..., 2:3])
        return self.k * Q[..., :2] * f + self.t

    def __call__(self, P: np.ndarray) -> np.ndarray:
        return self.project_rotated(self.rotate(P))


class _Canvas:
    """A supersampled RGB canvas addressed in output pixel coordinates."""

    def __init__(self, size: int, s: int, background: Image.Image) -> None:
        self.size, self.s = size, s
        self.img = background
        self.draw = ImageDraw.Draw(self.img, "RGBA")

    def xy(self, pts: np.ndarray) -> list[float]:
        # PIL truncates coordinates: a shape spanning [A, B] of the continuous canvas (X = s * x) fills the
        # pixels floor(A)..floor(B), i.e. [floor(A), floor(B) + 1], centred on the true shape up to the
        # quantisation (no half-pixel bias); strokes of odd width centre on floor(X) + 0.5 likewise.
        return np.floor(np.asarray(pts, dtype=np.float64).reshape(-1, 2) * self.s).ravel().tolist()

    def polygon(self, pts: np.ndarray, fill: tuple[int, int, int, int]) -> None:
        if len(pts) >= 3:
            self.draw.polygon(self.xy(pts), fill=fill)

    def line(self, pts: np.ndarray, fill: tuple[int, int, int, int], width: float) -> None:
        w = 2 * int(max(width * self.s, 1.0) / 2) + 1  # odd, so the stroke is centred
        self.draw.line(self.xy(pts), fill=fill, width=w, joint="curve" if len(pts) > 2 else None)

    def disc(self, c: np.ndarray, r: float, fill: tuple[int, int, int, int]) -> None:
        n = int(np.clip(r * self.s, 8, 32))
        self.polygon(_ellipse_pts(np.asarray(c, dtype=np.float64), np.array([r, 0.0]), np.array([0.0, r]), n), fill)


def _muted(rng: np.random.Generator, lo: float = 0.15, hi: float = 0.85) -> np.ndarray:
    """A random colour pulled towards a random grey (saturation ``lo..hi``)."""
    grey = rng.uniform(30, 225)
    return np.clip(grey + rng.uniform(lo, hi) * (rng.uniform(0, 255, 3) - grey), 0, 255)


def _background(rng: np.random.Generator, size: int, s: int) -> Image.Image:
    """Gradient + smooth noise + soft blobs (drawn small, blurred, upscaled) + a few sharp shapes."""
    m = max(16, size // 4)
    c1, c2 = _muted(rng), _muted(rng)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = (np.mgrid[0:m, 0:m] + 0.5) / m - 0.5
    g = np.clip(0.5 + xx * math.cos(ang) + yy * math.sin(ang), 0, 1)[..., None]
    arr = c1 * (1 - g) + c2 * g
    k = 6  # fixed, so that the random stream (and the face) does not depend on the image size
    noise = Image.fromarray(np.uint8(np.clip(128 + 40 * rng.normal(0, 1, (k, k, 3)), 0, 255)))
    arr += (np.asarray(noise.resize((m, m), Image.BICUBIC), dtype=np.float64) - 128) * rng.uniform(0.1, 0.6)
    small = Image.fromarray(np.uint8(np.clip(arr, 0, 255)))
    d = ImageDraw.Draw(small, "RGBA")
    for _ in range(rng.integers(2, 9)):
        cx, cy = rng.uniform(0, m, 2)
        r = rng.uniform(0.05, 0.35) * m
        fill = _col(_muted(rng, 0.1, 1.0), int(rng.uniform(60, 220)))
        if rng.random() < 0.5:
            d.ellipse([cx - r, cy - r * rng.uniform(0.4, 1.5), cx + r, cy + r], fill=fill)
        else:
            d.rectangle([cx - r, cy - r, cx + r * rng.uniform(0.3, 2), cy + r * rng.uniform(0.3, 2)], fill=fill)
    small = small.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    # Smooth at the output size; nearest-neighbour up to the canvas (box reduction gives it back exactly).
    big = small.resize((size, size), Image.BILINEAR).resize((size * s, size * s), Image.NEAREST)
    d = ImageDraw.Draw(big, "RGBA")
    for _ in range(rng.integers(0, 4)):
        x0, y0 = rng.uniform(0, size * s, 2)
        w, h = rng.uniform(0.05, 0.4, 2) * size * s
        fill = _col(_muted(rng, 0.1, 1.0), int(rng.uniform(80, 255)))
        if rng.random() < 0.5:
            d.rectangle([x0, y0, x0 + w, y0 + h], fill=fill)
        else:
            d.line([x0, y0, x0 + w, y0 + h * rng.choice([-1, 1])], fill=fill, width=int(rng.uniform(1, 4) * s))
    return big


def _shading(
    size: int, cam: _Camera, light: np.ndarray, ambient: float, centre: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """Lambert shading of a head ellipsoid seen orthographically, normalised to 1 for a frontal normal;
    computed on a half-resolution grid and upsampled (it is smooth)."""
    m = max(8, size // 2)
    f = size / m
    A = cam.R @ np.diag(1.0 / (cam.k * radii) ** 2) @ cam.R.T
    c2 = cam.project_rotated(cam.rotate(centre))
    grid = ((np.arange(m) + 0.5) * f).astype(np.float32)
    dx = grid[None, :] - np.float32(c2[0])
    dy = grid[:, None] - np.float32(c2[1])
    A = A.astype(np.float32)
    a = A[2, 2]
    b = A[0, 2] * dx + A[1, 2] * dy
    c = A[0, 0] * dx * dx + 2 * A[0, 1] * dx * dy + A[1, 1] * dy * dy - 1.0
    dz = (-b + np.sqrt(np.maximum(b * b - a * c, 0.0))) / a
    n = [A[i, 0] * dx + A[i, 1] * dy + A[i, 2] * dz for i in range(3)]
    norm = np.sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]) + 1e-12
    lam = np.maximum((n[0] * light[0] + n[1] * light[1] + n[2] * light[2]) / norm, 0.0)
    shade = (ambient + (1 - ambient) * lam) / (ambient + (1 - ambient) * light[2])
    img = Image.fromarray(shade.astype(np.float32), mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _supersample(cfg: SyntheticFaceConfig) -> int:
    if cfg.supersample > 0:
        return int(cfg.supersample)
    return 4 if cfg.image_size < 160 else 3


@dataclass
class _Face:
    """Everything the drawing steps share for one face."""

    rng: np.random.Generator
    canvas: _Canvas
    cam: _Camera
    P: np.ndarray  # (68, 3) deformed template (head frame)
    pts: np.ndarray  # (68, 2) landmarks in output pixels
    idp: dict[str, float]
    col: dict[str, np.ndarray]
    light: np.ndarray
    u: float  # output pixels per template unit
    up: np.ndarray  # unit vector of the face's "up" in the image
    pose: tuple[float, float, float]  # yaw, pitch, roll (degrees)
    cfg: SyntheticFaceConfig

    def along_up(self, curve: np.ndarray, dist: float | np.ndarray) -> np.ndarray:
        """Offset a polyline along its normals, towards the face's up for positive ``dist``."""
        d = np.gradient(curve, axis=0)
        d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
        normal = np.stack([d[:, 1], -d[:, 0]], 1)
        if float((normal @ self.up).mean()) < 0:
            normal = -normal
        return curve + normal * np.asarray(dist, dtype=np.float64).reshape(-1, 1)


def _draw_head(f: _Face, hair_style: int, forehead_h: float) -> tuple[np.ndarray, np.ndarray]:
    """Hair, neck, clothes, ears and the skin polygon; returns the head outline and the skin polygon."""
    rng, cam, canvas, P, u = f.rng, f.cam, f.canvas, f.P, f.u
    skin, hair = f.col["skin"], f.col["hair"]
    fw, jaw_top = -P[0, 0], P[0, 1]

    vol = rng.uniform(0.95, 1.1) * (1.12 if hair_style == 3 else 1.0) * (0.96 if hair_style == 2 else 1.0)
    head_c = np.array([0.0, -0.32, -0.55])
    head_r = np.array([fw * 1.12, 1.02, 1.0]) * vol
    outline = _ellipsoid_outline(cam, head_c, head_r)
    if hair_style == 1:  # long hair: a curtain behind the neck and shoulders
        length = rng.uniform(1.4, 2.4)
        ys = np.linspace(-0.4, length, 8)
        xs = -fw * 1.15 * vol - 0.04 * (ys + 0.4) + 0.04 * np.sin(ys * rng.uniform(3, 6))
        left = np.stack([xs, ys, np.full(8, -0.5)], 1)
        canvas.polygon(cam(np.concatenate([left, left[::-1] * np.array([-1.0, 1.0, 1.0])])), _col(hair * 0.9))
    canvas.polygon(outline, _col(hair))
    if hair_style != 2:  # strands: polylines from the crown to the outline (convex combinations stay inside)
        crown = cam(np.array([rng.uniform(-0.3, 0.3), head_c[1] - head_r[1] * 0.9, head_c[2] + 0.2]))
        centroid = outline.mean(0)
        for j in rng.choice(len(outline), size=int(rng.integers(8, 20))):
            end = 0.9 * outline[j] + 0.1 * centroid
            mid = 0.7 * (crown + end) / 2 + 0.3 * (centroid if rng.random() < 0.5 else end)
            canvas.line(np.stack([crown, mid, end]), _col(hair * rng.uniform(0.6, 1.5), 70), 0.012 * u)

    # Neck: head-attached top, body-attached bottom (the body follows the head pose only partly).
    yaw, pitch, roll = f.pose
    body_R = _rotation(0.3 * yaw, 0.2 * pitch, 0.3 * roll)
    pivot = np.array([0.0, 1.3, -0.45])
    pivot_rot = cam.rotate(pivot)

    def body(Pb: np.ndarray) -> np.ndarray:
        return cam.project_rotated((np.asarray(Pb) - pivot) @ body_R.T + pivot_rot)

    nw = fw * rng.uniform(0.52, 0.66)
    neck_top = cam(np.array([[-nw, 0.5, -0.5], [nw, 0.5, -0.5]]))
    neck_bot = body(np.array([[nw * 1.08, 2.6, -0.45], [-nw * 1.08, 2.6, -0.45]]))
    canvas.polygon(np.concatenate([neck_top, neck_bot]), _col(skin * rng.uniform(0.7, 0.85)))
    sw, sy, dip = rng.uniform(1.5, 2.0), rng.uniform(1.75, 2.1), rng.uniform(0.15, 0.6)
    clothes = np.array(
        [
            [-nw * 1.02, sy - 0.3, -0.45],
            [0.0, sy - 0.3 + dip, -0.3],
            [nw * 1.02, sy - 0.3, -0.45],
            [sw * 0.75, sy - 0.12, -0.5],
            [sw, sy + 0.25, -0.5],
            [sw * 1.1, 5.0, -0.5],
            [-sw * 1.1, 5.0, -0.5],
            [-sw, sy + 0.25, -0.5],
            [-sw * 0.75, sy - 0.12, -0.5],
        ]
    )
    canvas.polygon(_spline(body(clothes), 4, closed=True), _col(f.col["clothes"]))

    # Ears (hidden by long hair), drawn when their front faces the camera.
    if hair_style != 1:
        for sign in (-1.0, 1.0):
            if (cam.R @ np.array([sign, 0.0, 0.45]))[2] < -0.1:
                continue
            e2 = np.array([0.45 * sign, 0.0, -1.0]) / math.hypot(0.45, 1.0)
            ec = np.array([sign * fw * 0.97, jaw_top + 0.17, -0.45]) + 0.08 * e2
            canvas.polygon(cam(_ellipse_pts(ec, np.array([0.0, 0.27, 0.0]), 0.12 * e2, 20)), _col(skin * 0.93))
            inner = _ellipse_pts(ec + 0.02 * e2, np.array([0.0, 0.17, 0.0]), 0.06 * e2, 16)
            canvas.polygon(cam(inner), _col(skin * 0.75))

    # Skin: the jaw curve (through points 0..16) closed over a forehead arc.
    phi = np.linspace(0.0, math.pi, 17)[1:-1]
    cph = np.cos(phi)
    fwf = fw * 0.985
    arc = np.stack(
        [
            fwf * np.sign(cph) * np.abs(cph) ** 0.8,
            jaw_top - forehead_h * np.sin(phi) ** 0.7,
            0.02 - f.idp["jaw_depth"] * np.abs(cph),
        ],
        1,
    )
    face_poly = np.concatenate([_spline(f.pts[:17], 6), cam(arc)])
    canvas.polygon(face_poly, _col(skin))

    # Soft eye-socket shadows and blush: nested translucent ellipses.
    pts = f.pts
    for ix in (range(36, 42), range(42, 48)):
        e = pts[list(ix)]
        for grow in (1.25, 1.0, 0.8):
            axis = (e[3] - e[0]) / 2 * grow * 1.1
            perp = np.array([-axis[1], axis[0]]) * 0.75
            if float(perp @ f.up) < 0:
                perp = -perp
            canvas.polygon(_ellipse_pts(e.mean(0) + perp * 0.25, axis, perp), _col(skin * 0.6, 18))
    blush = int(rng.uniform(0, 10))
    for cheek in (pts[[1, 2, 3, 48, 31, 40]].mean(0), pts[[15, 14, 13, 54, 35, 47]].mean(0)):
        for r in (0.17, 0.13, 0.09):
            canvas.disc(cheek, r * u, _col(np.array([220, 80, 80]), blush))

    # Beard and moustache (translucent, under the lips).
    if rng.random() < f.cfg.beard_prob:
        beard_col = f.col["brow"] if hair_style == 2 else hair
        alpha = int(rng.uniform(90, 230))
        wide = pts[[54, 48]] + (pts[[54, 48]] - pts[[48, 54]]) * 0.12
        canvas.polygon(np.concatenate([_spline(pts[3:14], 4), wide]), _col(beard_col, alpha))
        base = pts[[35, 34, 33, 32, 31]]
        stache = np.concatenate([pts[48:55], base + (pts[[54, 53, 51, 49, 48]] - base) * 0.25])
        canvas.polygon(stache, _col(beard_col, alpha))

    # Bangs (kept clear of the brows).
    if hair_style != 2 and rng.random() < f.cfg.bangs_prob:
        brow_top = float(P[17:27, 1].min())
        fringe_y = rng.uniform(brow_top - 0.45, brow_top - 0.14)
        xs = np.linspace(fwf, -fwf, 12)
        wav = 0.04 * np.sin(xs * rng.uniform(6, 12) + rng.uniform(0, 6)) + rng.uniform(-0.08, 0.08) * xs
        fringe = np.stack([xs, fringe_y + wav, 0.04 - f.idp["jaw_depth"] * (np.abs(xs) / fwf) ** 1.2], 1)
        canvas.polygon(np.concatenate([cam(arc), cam(fringe)[::-1]]), _col(hair))
    return outline, face_poly


def _draw_brows(f: _Face) -> None:
    """Brow bands through 17..21 and 22..26; the landmarks sit in the band's upper part."""
    thick = f.rng.uniform(0.05, 0.08) * f.u
    for ix, taper in ((range(17, 22), (0.6, 1.0)), (range(22, 27), (1.0, 0.6))):
        b = _spline(f.pts[list(ix)], 6)
        w = thick * np.linspace(*taper, len(b))
        band = np.concatenate([f.along_up(b, 0.45 * w), f.along_up(b, -0.75 * w)[::-1]])
        f.canvas.polygon(band, _col(f.col["brow"], 250))


def _draw_eyes(f: _Face) -> None:
    """Sclera through the six eye points, iris/pupil clipped to the opening, lids, crease and glint."""
    rng, cam, canvas, u = f.rng, f.cam, f.canvas, f.u
    gaze_max = f.cfg.gaze
    gy, gp = math.radians(_tnormal(rng, gaze_max)), math.radians(_tnormal(rng, gaze_max * 0.6))
    gaze = np.array([math.sin(gy) * math.cos(gp), -math.sin(gp), math.cos(gy) * math.cos(gp)])
    gu = np.cross([0.0, 1.0, 0.0], gaze)
    gu /= np.linalg.norm(gu)
    gv = np.cross(gaze, gu)
    iris_r = rng.uniform(0.058, 0.07) * f.idp["eye_w"] / 0.30
    pupil_f = rng.uniform(0.3, 0.5)
    lid_col = f.col["brow"] * 0.6
    # Per eye: outer corner, upper lid x2, inner corner, lower lid x2 (lower listed from the outer side).
    for ix in ((36, 37, 38, 39, 40, 41), (45, 44, 43, 42, 47, 46)):
        e = f.pts[list(ix)]
        upper = _spline(e[[0, 1, 2, 3]], 6)
        lower = _spline(e[[0, 5, 4, 3]], 6)
        canvas.polygon(np.concatenate([upper, lower[::-1][1:-1]]), _col(f.col["sclera"]))

        def disc3(c3: np.ndarray, r: float, n: int, upper=upper, lower=lower) -> np.ndarray:
            return _clip_between(cam(_ellipse_pts(c3, r * gu, r * gv, n)), upper, lower)

        ic = f.P[list(ix)].mean(0) - np.array([0.0, 0.0, 0.10]) + 0.125 * gaze  # eyeball centre + radius
        canvas.polygon(disc3(ic, iris_r, 28), _col(f.col["iris"]))
        canvas.polygon(disc3(ic, iris_r * 0.6, 24), _col(f.col["iris"] * 0.7, 120))
        canvas.polygon(disc3(ic + 0.002 * gaze, iris_r * pupil_f, 20), _col(np.array([12, 10, 10])))
        glint = cam(ic + iris_r * 0.45 * (f.light[0] * gu - f.light[1] * gv) + 0.01 * gaze)
        canvas.disc(_clip_between(glint[None], upper, lower)[0], max(0.012 * u, 0.4), _col(np.full(3, 250), 200))
        lid_shadow = _clip_between(f.along_up(upper, -0.02 * u), upper, lower)
        canvas.polygon(np.concatenate([upper, lid_shadow[::-1]]), _col(f.col["sclera"] * 0.5, 90))
        canvas.line(f.along_up(upper, -0.006 * u), _col(lid_col), 0.028 * u)  # lash line, just inside
        canvas.line(f.along_up(upper, 0.045 * u)[3:-3], _col(f.col["skin"] * 0.7, 150), 0.012 * u)
        canvas.line(lower, _col(f.col["skin"] * 0.55, 170), 0.012 * u)


def _draw_nose(f: _Face) -> None:
    """Side shadow along the bridge 27..30, tip highlight, alar wings, nostrils above the base 31..35."""
    pts, canvas, u, skin = f.pts, f.canvas, f.u, f.col["skin"]
    to_left = pts[31] - pts[35]
    to_left /= max(float(np.linalg.norm(to_left)), 1e-9)
    shadow_left = f.light[0] > 0  # the shadow falls on the side away from the light
    sv = to_left if shadow_left else -to_left
    near = _spline(np.stack([pts[27] + sv * 0.03 * u, pts[29] + sv * 0.05 * u, pts[30] + sv * 0.05 * u]), 4)
    far = _spline(np.stack([pts[30] + sv * 0.09 * u, pts[29] + sv * 0.11 * u, pts[27] + sv * 0.08 * u]), 4)
    ala = pts[31 if shadow_left else 35] + f.up * 0.02 * u
    canvas.polygon(np.concatenate([near, ala[None], far]), _col(skin * 0.55, 70))
    tip = _ellipse_pts(pts[29] * 0.4 + pts[30] * 0.6, (pts[35] - pts[31]) * 0.12, (pts[30] - pts[27]) * 0.12, 16)
    canvas.polygon(tip, _col(np.full(3, 255), int(f.rng.uniform(20, 60))))
    up = pts[30] - pts[33]
    for a, b in ((31, 32), (35, 34)):
        out = pts[a] - pts[b]
        wing = np.stack([pts[a] + up * 1.3 + out * 0.2, pts[a] + out * 0.35 + up * 0.3, pts[a]])
        canvas.line(_spline(wing, 5), _col(skin * 0.6, 160), 0.016 * u)
        nostril = _ellipse_pts(0.5 * (pts[a] + pts[b]) + 0.28 * up, (pts[b] - pts[a]) * 0.55, up * 0.22, 16)
        canvas.polygon(nostril, _col(skin * 0.3, 230))
    base = _spline(pts[31:36], 5)
    canvas.line(base, _col(skin * 0.6, 150), 0.014 * u)
    canvas.polygon(np.concatenate([base, (base - up * 0.25)[::-1]]), _col(skin * 0.6, 60))


def _draw_mouth(f: _Face) -> None:
    """Lips through 48..59, dark opening through 60..67 with teeth and tongue when open."""
    pts, canvas, u, rng = f.pts, f.canvas, f.u, f.rng
    up_out = _spline(pts[48:55], 5)
    lo_out = _spline(pts[[54, 55, 56, 57, 58, 59, 48]], 5)
    up_in = _spline(pts[60:65], 5)
    lo_in = _spline(pts[[64, 65, 66, 67, 60]], 5)
    lip = f.col["lips"]
    canvas.polygon(np.concatenate([up_out, lo_out[1:-1]]), _col(lip * 1.05))
    canvas.polygon(np.concatenate([up_out, up_in[::-1]]), _col(lip * 0.88))
    gap = float(np.linalg.norm(pts[66] - pts[62]))
    if gap > 0.03 * u:
        canvas.polygon(np.concatenate([up_in, lo_in[1:-1]]), _col(np.minimum([55, 18, 22], f.col["skin"] * 0.35)))
        down = -f.up
        if rng.random() < 0.75:
            th = min(0.07 * u, 0.4 * gap)
            teeth = _clip_between(np.concatenate([up_in, (up_in + down * th)[::-1]]), up_in, lo_in[::-1])
            canvas.polygon(teeth, _col(np.array([238, 232, 215]) * rng.uniform(0.8, 1.0)))
        if gap > 0.12 * u:
            tongue = _ellipse_pts(pts[66] - down * 0.18 * gap, (pts[64] - pts[60]) * 0.3, down * 0.22 * gap, 20)
            canvas.polygon(_clip_between(tongue, up_in, lo_in[::-1]), _col(np.array([170, 70, 75])))
    canvas.line(up_in, _col(lip * 0.45, 220), 0.016 * u)
    canvas.line(lo_in, _col(lip * 0.6, 120), 0.01 * u)
    shine = _ellipse_pts(0.5 * (pts[57] + pts[66]), (pts[54] - pts[48]) * 0.15, (pts[57] - pts[66]) * 0.18, 16)
    canvas.polygon(shine, _col(np.full(3, 255), int(rng.uniform(15, 50))))


def _draw_glasses(f: _Face) -> None:
    """Elliptical rims in front of the eyes, a bridge over the nose and temple arms to the ears."""
    rng, cam, canvas, P = f.rng, f.cam, f.canvas, f.P
    frame = _col(rng.choice([20.0, 60.0, 120.0, 180.0]) * rng.uniform(0.7, 1.3, 3))
    lw = rng.uniform(0.015, 0.03) * f.u
    tint = int(rng.uniform(0, 90))
    gw, gh = rng.uniform(0.19, 0.24), rng.uniform(0.12, 0.17)
    rims = []
    for ix in (range(36, 42), range(42, 48)):
        c3 = P[list(ix)].mean(0) + np.array([0.0, 0.03, 0.16])
        rim = cam(_ellipse_pts(c3, np.array([gw, 0.0, 0.0]), np.array([0.0, gh, 0.0]), 28))
        rims.append(rim)
        canvas.polygon(rim, _col(np.array([90.0, 100.0, 110.0]), tint))
        canvas.line(np.concatenate([rim, rim[:2]]), frame, lw)
    bridge = f.pts[27] + (f.pts[28] - f.pts[27]) * 0.3
    canvas.line(np.stack([rims[0][0], bridge, rims[1][14]]), frame, lw)
    for rim, j, sign in ((rims[0], 14, -1.0), (rims[1], 0, 1.0)):
        ear = cam(np.array([sign * -P[0, 0] * 0.98, P[0, 1] + 0.02, -0.4]))
        canvas.line(np.stack([rim[j], ear]), frame, lw)


def _finish(f: _Face, person: list[np.ndarray], ambient: float) -> Image.Image:
    """Box-reduce the canvas, light the head (ellipsoid Lambert shading), colour gain, blur and noise."""
    size, s, rng, cfg = f.canvas.size, f.canvas.s, f.rng, f.cfg
    img = f.canvas.img.reduce(s) if s > 1 else f.canvas.img
    arr = np.asarray(img, dtype=np.float32)
    mask_img = Image.new("L", (size * s, size * s), 0)
    md = ImageDraw.Draw(mask_img)
    for poly in person:
        md.polygon(f.canvas.xy(poly), fill=255)
    if s > 1:
        mask_img = mask_img.reduce(s)
    mask = np.asarray(mask_img, dtype=np.float32)[..., None] / 255.0
    fw = -f.P[0, 0]
    shade = _shading(size, f.cam, f.light, ambient, np.array([0.0, 0.1, -0.45]), np.array([fw * 1.12, 1.3, 0.95]))
    gain = (rng.uniform(0.75, 1.2) * rng.uniform(0.95, 1.05, 3)).astype(np.float32)
    arr = arr * (1.0 + mask * (shade[..., None] - 1.0)) * gain
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    blur = rng.uniform(0, cfg.blur_max) * size / 256
    if blur > 0.15:
        out = out.filter(ImageFilter.GaussianBlur(blur))
    sigma = rng.uniform(0, cfg.noise_max)
    if sigma > 0.3:
        noise = rng.standard_normal((size, size, 1), dtype=np.float32)  # sensor-like luminance noise
        out = Image.fromarray(np.clip(np.rint(np.asarray(out, np.float32) + sigma * noise), 0, 255).astype(np.uint8))
    return out


def render_face(rng: np.random.Generator, cfg: SyntheticFaceConfig | None = None) -> tuple[Image.Image, np.ndarray]:
    """RGB image of ``cfg.image_size`` and its ``(68, 2)`` float64 landmarks in that image's pixel
    coordinates."""
    cfg = cfg or SyntheticFaceConfig()
    size = int(cfg.image_size)
    s = _supersample(cfg)

    # Shape, pose and framing.
    idp = _sample_identity(rng, cfg.identity)
    ex = _sample_expression(rng, cfg)
    col = _sample_colours(rng, cfg.lipstick_prob)
    P = _build_shape(idp, ex)
    P *= np.array([rng.uniform(0.93, 1.07), rng.uniform(0.95, 1.05), 1.0]) ** cfg.identity
    yaw, pitch, roll = _tnormal(rng, cfg.yaw), _tnormal(rng, cfg.pitch), _tnormal(rng, cfg.roll)
    cam = _Camera(_rotation(yaw, pitch, roll), float(rng.uniform(*cfg.perspective)))
    raw = cam(P)
    lo, hi = raw.min(0), raw.max(0)
    side = size / (cfg.framing * (1.0 + cfg.size_jitter * rng.uniform(-1, 1)))
    cam.k = side / float(max(hi - lo))
    centre = np.full(2, size / 2.0) + cfg.centre_jitter * size * rng.uniform(-1, 1, 2)
    cam.t = centre - cam.k * (lo + hi) / 2
    pts = cam(P)
    up = (cam.R @ np.array([0.0, -1.0, 0.0]))[:2]
    up /= max(float(np.linalg.norm(up)), 1e-9)

    # Scene.
    hair_style = int(rng.choice(4, p=[0.5, 0.3, 0.1, 0.1]))  # short, long, bald, voluminous
    forehead_h = rng.uniform(0.78, 1.0) * (1.25 if hair_style == 2 else 1.0)
    if hair_style == 2:
        col["hair"] = col["skin"] * rng.uniform(0.85, 0.97)
    lx, ly = rng.uniform(-0.8, 0.8), rng.uniform(-0.8, 0.3)
    light = np.array([lx, ly, 1.0]) / math.sqrt(lx * lx + ly * ly + 1.0)
    ambient = rng.uniform(0.45, 0.8)
    canvas = _Canvas(size, s, _background(rng, size, s))
    f = _Face(rng, canvas, cam, P, pts, idp, col, light, cam.k, up, (yaw, pitch, roll), cfg)

    outline, face_poly = _draw_head(f, hair_style, forehead_h)
    _draw_brows(f)
    _draw_eyes(f)
    _draw_nose(f)
    _draw_mouth(f)
    if rng.random() < cfg.glasses_prob:
        _draw_glasses(f)
    return _finish(f, [outline, face_poly], ambient), pts.astype(np.float64)


def _ellipsoid_outline(cam: _Camera, centre: np.ndarray, radii: np.ndarray, n: int = 48) -> np.ndarray:
    """Projected silhouette of an ellipsoid (orthographic contour, then the camera's perspective)."""
    A = cam.R @ np.diag(1.0 / radii**2) @ cam.R.T
    M = A[:2, :2] - np.outer(A[:2, 2], A[2, :2]) / A[2, 2]
    w, V = np.linalg.eigh(M)
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    xy = (V @ np.stack([np.cos(t) / math.sqrt(w[0]), np.sin(t) / math.sqrt(w[1])])).T
    z = -(xy @ A[2, :2]) / A[2, 2]
    Q = np.concatenate([xy, z[:, None]], 1) + cam.rotate(centre)
    return cam.project_rotated(Q)


def generate(n: int, seed: int = 0, cfg: SyntheticFaceConfig | None = None) -> list[tuple[Image.Image, np.ndarray]]:
    """``n`` faces; face ``i`` depends only on ``(seed, i)`` (``np.random.default_rng([seed, i])``)."""
    return [render_face(np.random.default_rng([seed, i]), cfg) for i in range(n)]


def write_folder(
    out_dir: str | Path, n: int, seed: int = 0, cfg: SyntheticFaceConfig | None = None, ext: str = "png"
) -> list[Path]:
    """Write ``synth_00000.<ext>`` + ``synth_00000.pts`` ... into ``out_dir`` (created); returns the image
    paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img, pts = render_face(np.random.default_rng([seed, i]), cfg)
        p = out / f"synth_{i:05d}.{ext.lstrip('.')}"
        img.save(p, **({"quality": 95} if p.suffix.lower() in (".jpg", ".jpeg") else {}))
        write_pts(p.with_suffix(".pts"), pts)
        paths.append(p)
    return paths
