"""The data protocol of the low-resolution benchmark and the transfer probe (``lowres.py``, ``transfer_probe.py``).

Labeled pool: Helen train (one identity per file) + YTF68 train (identity = the person of ``<Person>_<C><F>``).

- **Validation** (also the transfer probe's held-out pairs): ``VAL_FRACTION`` of the faces of each source, whole
  identities drawn with the fixed seed ``VAL_SEED`` -- the same faces for every seed and labeled fraction, never
  trained on, never Helen test.
- **Labeled**: a fraction ``F`` of the remaining faces of each source (so that every seed keeps the same mix of
  Helen photos and YTF frames), whole identities drawn with the run's seed; Helen faces are drawn 3x as often as
  YTF frames (whose "HR" faces are blurry video frames), as in the full setting.
- **Unlabeled** (labels dropped): the remaining faces as still images (SHT-i / EQ-i, with All-Age-Faces) and
  their YTF frames grouped by clip as video pairs (SHT-v, with the talking-head videos). Their crops are the
  datasets' own framing (the same canonical crop as the labeled faces); no landmark value reaches training.

Every count in the benchmark's description is counted here, from the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from sht.data.dataset import FaceSet, load_source
from sht.data.splits import YTF_PERSON, identity_keys, identity_split

VAL_FRACTION = 0.08
VAL_SEED = 20240612
HELEN_REPEAT = 3
YTF_CLIP = r"^(.+_\d)\d*$"  # person + clip digit: the frames of one YTF video clip


@dataclass
class LowresData:
    """Faces of one (seed, labeled fraction) of the protocol, and what was counted."""

    labeled: FaceSet
    val: FaceSet
    unlabeled_images: FaceSet | None
    unlabeled_clips: FaceSet | None
    counts: dict[str, int] = field(default_factory=dict)


def _unlabeled(faces: FaceSet) -> FaceSet:
    out = faces.subset(torch.arange(len(faces)))
    out.points, out.visible, out.boxes = None, None, None
    return out


def _clips(faces: FaceSet) -> FaceSet | None:
    """The faces grouped by YTF clip; clips with one frame only are dropped (no pair)."""
    keys = identity_keys(faces.names, YTF_CLIP)
    uniq = {k: i for i, k in enumerate(sorted(set(keys)))}
    groups = torch.tensor([uniq[k] for k in keys], dtype=torch.long)
    counts = torch.bincount(groups, minlength=len(uniq))
    keep = (counts[groups] >= 2).nonzero()[:, 0]
    if len(keep) == 0:
        return None
    out = _unlabeled(faces.subset(keep))
    _, out.groups = torch.unique(groups[keep], return_inverse=True)
    return out


def load_lowres_data(
    data: str | Path,
    size: int,
    margin: float,
    context: float,
    fraction: float,
    seed: int,
    cache_dir: str | None = None,
) -> LowresData:
    """The benchmark's labeled / validation / unlabeled faces for ``fraction`` of the labels and ``seed``."""
    d = Path(data)
    helen = load_source(str(d / "300w/helen/trainset"), size, margin, context, cache_dir=cache_dir)
    ytf = load_source(str(d / "ytf68/train"), size, margin, context, cache_dir=cache_dir)
    pool = FaceSet.concat([helen, ytf])
    is_helen = torch.arange(len(pool)) < len(helen)
    keys = identity_keys(helen.names, None, "helen/") + identity_keys(ytf.names, YTF_PERSON, "ytf/")

    def per_source(index: torch.Tensor, share: float, draw: int) -> torch.Tensor:
        """Mask over ``index``: ``share`` of the faces of each source, by identity."""
        mask = torch.zeros(len(index), dtype=torch.bool)
        for src in (True, False):
            part = (is_helen[index] == src).nonzero()[:, 0]
            mask[part] = identity_split([keys[i] for i in index[part].tolist()], share, draw)
        return mask

    everyone = torch.arange(len(pool))
    val_mask = per_source(everyone, VAL_FRACTION, VAL_SEED)
    rest = everyone[~val_mask]
    lab_mask = per_source(rest, fraction, seed)
    lab, unl = rest[lab_mask], rest[~lab_mask]
    lab_helen, lab_ytf = lab[is_helen[lab]], lab[~is_helen[lab]]
    labeled = FaceSet.concat([pool.subset(lab_helen)] * HELEN_REPEAT + [pool.subset(lab_ytf)]) if len(lab) else None
    if labeled is None:
        raise ValueError(f"labeled fraction {fraction} leaves no labeled face")
    unl_images = _unlabeled(pool.subset(unl)) if len(unl) else None
    unl_ytf = unl[~is_helen[unl]]
    clips = _clips(pool.subset(unl_ytf)) if len(unl_ytf) else None
    val = pool.subset(val_mask.nonzero()[:, 0])
    counts = {
        "pool_faces": len(pool),
        "pool_identities": len(set(keys)),
        "helen_faces": len(helen),
        "ytf_faces": len(ytf),
        "val_faces": len(val),
        "val_identities": len({keys[i] for i in val_mask.nonzero()[:, 0].tolist()}),
        "labeled_faces": len(lab),
        "labeled_helen": len(lab_helen),
        "labeled_ytf": len(lab_ytf),
        "labeled_identities": len({keys[i] for i in lab.tolist()}),
        "unlabeled_faces": len(unl),
        "unlabeled_clips": 0 if clips is None or clips.groups is None else int(clips.groups.max()) + 1,
        "unlabeled_clip_frames": 0 if clips is None else len(clips),
    }
    return LowresData(labeled, val, unl_images, clips, counts)
