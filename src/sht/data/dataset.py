"""Face sets held in memory, a resumable sampler and the batch builder used by training and evaluation.

Images are decoded and cropped once (a canonical crop with ``context`` x more surround, so augmentation never
needs the original photo) and cached on disk; each batch is then made with whole-batch tensor operations:
affine warp to the HR face, colour jitter, bicubic degradation to a random LR size and heatmap encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import AugmentConfig
from . import degradation
from .formats import (
    IMAGE_SUFFIXES,
    DataError,
    LabeledImage,
    LandmarkScheme,
    check_points_in_image,
    load_image,
    scan_pts_folder,
    scheme_for,
)
from .heatmaps import HeatmapCodec
from .transforms import (
    affine_matrices,
    apply_colour,
    canonical_box,
    canonical_crop,
    colour_factors,
    compose_affine,
    crop_image,
    image_to_tensor,
    warp_images,
    warp_points,
)

CACHE_VERSION = 2


@dataclass
class FaceSet:
    """Context crops ``(N, 3, C, C)`` uint8 with landmarks ``(N, K, 2)`` in crop pixels (None for unlabeled
    faces); the canonical crop of side ``size`` sits at the centre of each (``C = round(size * context)``).
    ``groups`` numbers the video clip of each face (None for still images); ``visible`` ``(N, K)`` marks visible
    landmarks (None: all visible); ``boxes`` ``(N, 4)`` holds the dataset's face boxes in crop pixels (None: use the
    landmark box)."""

    images: torch.Tensor
    points: torch.Tensor | None
    names: list[str]
    size: int
    context: float
    problems: list[str] = field(default_factory=list)
    groups: torch.Tensor | None = None
    visible: torch.Tensor | None = None
    boxes: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def crop_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def labeled(self) -> bool:
        return self.points is not None

    @property
    def num_points(self) -> int:
        if self.points is None:
            raise DataError("this face set is unlabeled: it has no landmarks")
        return int(self.points.shape[1])

    def canonical_points(self) -> torch.Tensor:
        """Landmarks in the pixels of the canonical (``size``) crops, float64."""
        if self.points is None:
            raise DataError("this face set is unlabeled: it has no landmarks")
        return self.points.double() - (self.crop_size - self.size) / 2

    def canonical_boxes(self) -> torch.Tensor | None:
        """The dataset's face boxes in canonical-crop pixels (None when the dataset has none)."""
        return None if self.boxes is None else self.boxes.double() - (self.crop_size - self.size) / 2

    def subset(self, index: Sequence[int] | torch.Tensor) -> FaceSet:
        idx = torch.as_tensor(index, dtype=torch.long)

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx]

        return FaceSet(
            self.images[idx],
            pick(self.points),
            [self.names[i] for i in idx.tolist()],
            self.size,
            self.context,
            list(self.problems),
            pick(self.groups),
            pick(self.visible),
            pick(self.boxes),
        )

    @staticmethod
    def concat(sets: Sequence[FaceSet]) -> FaceSet:
        if not sets:
            raise DataError("no face sets to combine")
        first = sets[0]
        for s in sets[1:]:
            if (s.size, s.context, s.labeled) != (first.size, first.context, first.labeled) or (
                s.labeled and s.num_points != first.num_points
            ):
                raise DataError("cannot combine face sets of different crop size, context, labels or point count")
        groups = None
        if all(s.groups is not None for s in sets):
            offset, parts = 0, []
            for s in sets:
                assert s.groups is not None
                parts.append(s.groups + offset)
                offset += int(s.groups.max()) + 1 if len(s) else 0
            groups = torch.cat(parts)
        visible = None
        if any(s.visible is not None for s in sets) and first.labeled:
            visible = torch.cat(
                [
                    s.visible if s.visible is not None else torch.ones(len(s), s.num_points, dtype=torch.bool)
                    for s in sets
                ]
            )
        boxes = torch.cat([s.boxes for s in sets]) if all(s.boxes is not None for s in sets) else None  # type: ignore[misc]
        return FaceSet(
            torch.cat([s.images for s in sets]),
            torch.cat([s.points for s in sets]) if first.labeled else None,  # type: ignore[misc]
            [n for s in sets for n in s.names],
            first.size,
            first.context,
            [p for s in sets for p in s.problems],
            groups,
            visible,
            boxes,
        )

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
        torch.save(
            {
                "version": CACHE_VERSION,
                "images": self.images,
                "points": self.points,
                "groups": self.groups,
                "visible": self.visible,
                "boxes": self.boxes,
                "names": self.names,
                "size": self.size,
                "context": self.context,
                "problems": self.problems,
            },
            tmp,
        )
        os.replace(tmp, path)

    @staticmethod
    def load(path: Path) -> FaceSet:
        d = torch.load(path, map_location="cpu", weights_only=True)
        if d.get("version") != CACHE_VERSION:
            raise DataError(f"{path}: cache format {d.get('version')} is not {CACHE_VERSION}")
        return FaceSet(
            d["images"],
            d["points"],
            list(d["names"]),
            int(d["size"]),
            float(d["context"]),
            list(d["problems"]),
            d.get("groups"),
            d.get("visible"),
            d.get("boxes"),
        )


def crop_samples(
    samples: Sequence[LabeledImage],
    size: int,
    margin: float,
    context: float,
    progress: bool = False,
    desc: str = "cropping",
    strict: bool = False,
) -> FaceSet:
    """Decode and crop labeled images; unreadable images and landmarks far outside their image are reported in
    ``problems`` and skipped (``strict``: raised)."""
    imgs, pts, names, problems, vis, boxes = [], [], [], [], [], []
    out = int(round(size * context))
    for s in tqdm(samples, desc=desc, disable=not progress, leave=False):
        try:
            img = load_image(s.image)
            shown = s.points if s.visible is None else s.points[np.asarray(s.visible, dtype=bool)]
            if len(shown) < 2:
                raise DataError(f"{s.image}: fewer than two visible landmarks")
            check_points_in_image(shown, img.size, str(s.image))
            box = canonical_box(shown, margin).expand(out / size)
            crop = crop_image(img, box, out)
        except (DataError, ValueError) as exc:
            if strict:
                raise DataError(str(exc)) from None
            problems.append(str(exc))
            continue
        imgs.append(image_to_tensor(crop))
        pts.append(torch.from_numpy(box.to_crop(s.points, out)).float())
        vis.append(
            torch.ones(len(s.points), dtype=torch.bool)
            if s.visible is None
            else torch.as_tensor(np.asarray(s.visible, dtype=bool))
        )
        if s.box is not None:
            b = np.asarray(s.box, dtype=np.float64).reshape(2, 2)
            boxes.append(torch.from_numpy(box.to_crop(b, out).reshape(4)).float())
        names.append(s.image.name)
    if not imgs:
        raise DataError(f"none of {len(samples)} images could be used; first problem: {problems[0]}")
    visible = torch.stack(vis)
    return FaceSet(
        torch.stack(imgs),
        torch.stack(pts),
        names,
        size,
        context,
        problems,
        None,
        None if bool(visible.all()) else visible,
        torch.stack(boxes) if len(boxes) == len(imgs) else None,
    )


def _folder_key(folder: Path, size: int, margin: float, context: float) -> str:
    h = hashlib.sha1()
    h.update(json.dumps([CACHE_VERSION, str(folder.resolve()), size, margin, context]).encode())
    for p in sorted(folder.iterdir()):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def load_source(
    source: str,
    size: int,
    margin: float,
    context: float,
    num_points: int = 68,
    cache_dir: str | None = None,
    progress: bool = False,
    strict: bool = False,
) -> FaceSet:
    """One data source: a folder of images with ``.pts`` beside them, ``synthetic:N[:seed]``, or a split of one of
    the paper's datasets in its native layout, ``NAME:ROOT:SPLIT[;key=value...]`` (e.g. ``wflw:/data/WFLW:test``,
    ``helen:/data/helen:test;offset=0``; see :mod:`sht.data.datasets`). Bad samples are listed in the result's
    ``problems`` and skipped, or raise in ``strict`` mode."""
    from .datasets import LOADERS

    head = source.split(":", 1)[0]
    if head in LOADERS:
        return _load_dataset_split(source, size, margin, context, cache_dir, progress, strict)
    if source.startswith("synthetic:"):
        from .synthetic import generate

        parts = source.split(":")
        try:
            n = int(parts[1])
            seed = int(parts[2]) if len(parts) > 2 else 0
        except (IndexError, ValueError):
            raise DataError(f"bad synthetic source {source!r}; use synthetic:N or synthetic:N:SEED") from None
        imgs, pts, names = [], [], []
        for i, (img, p) in enumerate(generate(n, seed=seed)):
            crop, cp, _ = canonical_crop(img, p, size, margin, context)
            imgs.append(image_to_tensor(crop))
            pts.append(torch.from_numpy(cp).float())
            names.append(f"synth_{seed}_{i:05d}")
        return FaceSet(torch.stack(imgs), torch.stack(pts), names, size, context)
    folder = Path(source)
    if not folder.is_dir():
        raise DataError(f"data source {source!r} is neither a folder nor synthetic:N")
    cache_path = None
    if cache_dir:
        key = _folder_key(folder, size, margin, context)
        cache_path = Path(cache_dir) / f"{folder.name}-{key}.pt"
        if cache_path.is_file():
            try:
                cached = FaceSet.load(cache_path)
            except Exception:  # a stale or broken cache is rebuilt, never trusted
                cache_path.unlink(missing_ok=True)
            else:
                if strict and cached.problems:
                    raise DataError(
                        f"{cached.problems[0]} (strict mode; {len(cached.problems)} problem(s) in {folder})"
                    )
                return cached
    report = scan_pts_folder(folder, num_points, strict=strict)
    fs = crop_samples(report.samples, size, margin, context, progress, desc=f"cropping {folder.name}", strict=strict)
    fs.problems = report.problems + fs.problems
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        fs.save(cache_path)
    return fs


def check_source(source: str) -> int:
    """How many labeled samples a data source offers, without reading any image (for checks before a run);
    raises :class:`DataError` naming the source when it is missing or empty."""
    from .datasets import LOADERS, parse_source

    head = source.split(":", 1)[0]
    if head in LOADERS:
        name, root, split, ds = parse_source(source)
        if not ds.splits[split]:
            raise DataError(f"data source {source!r}: split {split!r} of {name} at {root} is empty")
        return len(ds.splits[split])
    if source.startswith("synthetic:"):
        try:
            n = int(source.split(":")[1])
        except (IndexError, ValueError):
            raise DataError(f"bad synthetic source {source!r}; use synthetic:N or synthetic:N:SEED") from None
        if n < 1:
            raise DataError(f"data source {source!r} holds no faces")
        return n
    folder = Path(source)
    if not folder.is_dir():
        raise DataError(f"data source {source!r} is neither a folder nor synthetic:N nor NAME:ROOT:SPLIT")
    n = sum(1 for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.with_suffix(".pts").is_file())
    if n == 0:
        raise DataError(f"data source {source!r}: no image with a .pts file beside it")
    return n


def _load_dataset_split(
    source: str, size: int, margin: float, context: float, cache_dir: str | None, progress: bool, strict: bool
) -> FaceSet:
    from .datasets import parse_source

    name, root, split, ds = parse_source(source, strict)
    if split not in ds.splits:
        raise DataError(f"{name} at {root} has no split {split!r}; splits: {', '.join(ds.splits)}")
    samples = ds.splits[split]
    cache_path = None
    if cache_dir:
        h = hashlib.sha1(
            json.dumps([CACHE_VERSION, name, str(Path(root).resolve()), split, size, margin, context]).encode()
        )
        for smp in samples:
            h.update(f"{smp.image}:{smp.points.tobytes().hex()}:{smp.image.stat().st_mtime_ns}".encode())
        cache_path = Path(cache_dir) / f"{name}-{split}-{h.hexdigest()[:16]}.pt"
        if cache_path.is_file():
            try:
                return FaceSet.load(cache_path)
            except Exception:  # a broken cache is rebuilt, never trusted
                cache_path.unlink(missing_ok=True)
    fs = crop_samples(samples, size, margin, context, progress, desc=f"cropping {name}/{split}", strict=strict)
    fs.problems = ds.problems + fs.problems
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        fs.save(cache_path)
    return fs


def load_sources(
    sources: Sequence[str],
    size: int,
    margin: float,
    context: float,
    num_points: int = 68,
    cache_dir: str | None = None,
    progress: bool = False,
    strict: bool = False,
) -> FaceSet:
    """Concatenate several sources (see :func:`load_source`)."""
    if not sources:
        raise DataError("no data sources given (data.train is empty)")
    return FaceSet.concat(
        [load_source(s, size, margin, context, num_points, cache_dir, progress, strict) for s in sources]
    )


class EpochSampler:
    """Deterministic batches: the permutation of epoch ``e`` is drawn from ``(seed, e)``, so the indices of any
    step are known without state (exact resume) and ranks take disjoint slices of each global batch."""

    def __init__(self, n: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1) -> None:
        if n < batch_size * world_size:
            raise DataError(f"{n} samples are fewer than one global batch of {batch_size * world_size}")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world_size
        self.steps_per_epoch = n // (batch_size * world_size)
        self._cache: tuple[int, torch.Tensor] | None = None

    def _perm(self, epoch: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._cache = (epoch, torch.randperm(self.n, generator=g))
        return self._cache[1]

    def indices(self, step: int) -> torch.Tensor:
        epoch, pos = divmod(step, self.steps_per_epoch)
        gb = self.batch_size * self.world
        chunk = self._perm(epoch)[pos * gb : (pos + 1) * gb]
        return chunk[self.rank :: self.world]


def step_generator(seed: int, step: int, rank: int = 0, stream: int = 0) -> torch.Generator:
    """The random stream of one training step (augmentation, LR sizes), independent of history."""
    return torch.Generator().manual_seed(((seed * 7919 + rank) * 1_000_003 + step) * 31 + stream)


@dataclass
class Batch:
    """Network input ``(B, 3, S, S)``, bicubic face ``(B, 3, F, F)`` (the LR face upsampled to the face size), HR
    face ``(B, 3, F, F)``, landmarks ``(B, K, 2)`` in HR pixels, target heatmaps ``(B, K, S, S)``, each sample's
    LR size, and ``transform`` ``(B, 3, 3)``: the forward map (float64) from the sample's context crop to its HR
    face pixels, which relates two views of one crop (pairs)."""

    input: torch.Tensor
    base: torch.Tensor
    hr: torch.Tensor
    points: torch.Tensor | None
    heatmaps: torch.Tensor | None
    lr_size: torch.Tensor
    visible: torch.Tensor | None = None
    transform: torch.Tensor | None = None

    @property
    def labeled(self) -> bool:
        return self.points is not None

    def to(self, device: torch.device | str) -> Batch:
        fields = (self.input, self.base, self.hr, self.points, self.heatmaps, self.lr_size, self.visible)
        moved = [None if t is None else t.to(device, non_blocking=True) for t in fields]
        return Batch(*moved, transform=None if self.transform is None else self.transform.to(device))


class BatchBuilder:
    """Turns face-set indices into :class:`Batch` es (augmented for training, canonical for evaluation)."""

    def __init__(
        self,
        faces: FaceSet,
        input_size: int,
        codec: HeatmapCodec,
        lr_sizes: Sequence[int],
        augment: AugmentConfig | None = None,
        scheme: LandmarkScheme | None = None,
    ) -> None:
        self.faces = faces
        self.input_size = input_size
        self.codec = codec
        self.lr_sizes = torch.as_tensor(list(lr_sizes))
        self.augment = augment
        self.scheme = scheme or (scheme_for(faces.num_points) if faces.labeled else None)

    def geometry(self, n: int, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward maps context crop -> HR face (random when augmenting, identity-at-centre otherwise)."""
        c, s = self.faces.crop_size, self.faces.size
        a = self.augment
        if a is None or generator is None:
            zero = torch.zeros(n)
            flips = torch.zeros(n, dtype=torch.bool)
            return compose_affine(c, s, zero, torch.ones(n), torch.zeros(n, 2), flips), flips
        return affine_matrices(n, c, s, generator, a.rotation, (a.scale[0], a.scale[1]), a.translation, a.flip)

    def sizes(self, n: int, generator: torch.Generator | None, lr_size: int | None = None) -> torch.Tensor:
        """LR size of each sample: ``lr_size`` if given, random among ``lr_sizes`` when augmenting, else the first."""
        if lr_size is not None:
            return torch.full((n,), lr_size)
        if generator is not None:
            return self.lr_sizes[torch.randint(len(self.lr_sizes), (n,), generator=generator)]
        return torch.full((n,), int(self.lr_sizes[0]))

    def build(self, index: torch.Tensor, generator: torch.Generator | None = None, lr_size: int | None = None) -> Batch:
        """A batch of the given samples; ``generator`` enables augmentation, ``lr_size`` fixes the LR size."""
        n = len(index)
        fwd, flips = self.geometry(n, generator)
        sizes = self.sizes(n, generator, lr_size)
        colour = self.colour(n, generator)
        return self.render(index, fwd, flips, sizes, colour)

    def colour(self, n: int, generator: torch.Generator | None) -> torch.Tensor | None:
        """Random colour factors ``(n, 3)`` when augmenting with colour jitter, else None."""
        if generator is None or self.augment is None or self.augment.colour <= 0:
            return None
        return colour_factors(n, self.augment.colour, generator)

    def render(
        self,
        index: torch.Tensor,
        forward: torch.Tensor,
        flips: torch.Tensor,
        sizes: torch.Tensor,
        colour: torch.Tensor | None = None,
    ) -> Batch:
        """Warp the context crops through ``forward`` to HR faces, apply ``colour`` factors ``(B, 3)``, degrade to
        ``sizes`` and encode heatmaps (labeled sets only)."""
        hr = warp_images(self.faces.images[index], forward, self.faces.size)
        if colour is not None:
            hr = apply_colour(hr, colour)
        hr = degradation.quantize(hr)
        inp, base = degradation.degrade(hr, sizes, self.input_size, self.faces.size)
        assert base is not None
        pts = heatmaps = visible = None
        if self.faces.points is not None:
            assert self.scheme is not None
            pts = warp_points(self.faces.points[index], forward, flips, self.scheme)
            if self.faces.visible is not None:
                visible = self.faces.visible[index].clone()
                if flips.any():
                    visible[flips] = visible[flips][:, torch.as_tensor(self.scheme.flip)]
            heatmaps = self.codec.encode(pts, visible)
        return Batch(inp, base, hr, pts, heatmaps, sizes, visible, forward.double())


def mean_shape(faces: FaceSet) -> np.ndarray:
    """Mean landmark positions in canonical HR-crop pixels (the 'mean shape' baseline)."""
    return faces.canonical_points().mean(0).numpy()
