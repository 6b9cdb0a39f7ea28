"""Training the face detector on composite images (``sht train-detector``), in the shared training loop.

:class:`DetectorStage` is one more stage of :class:`~sht.train.trainer.Trainer`: the loop, progress bar,
``metrics.csv``, checkpoints every ``train.checkpoint_every`` steps and the exact resume are the trainer's; the
images of step ``t`` are a function of ``(train.seed, t)`` (:func:`sht.data.composites.image_rng`). Validation
runs the detector on fixed composites of faces held out by identity (``data.val_fraction``): average precision and
recall / false positives per image at the model's threshold, at IoU > 0.3 and 0.5 with the landmark box. The
run's detector weights (fp16, as shipped) are written to ``<out>/face-detector.safetensors`` at the end.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import DetectorConfig, dump_yaml
from ..data import degradation
from ..data.composites import Composite, CompositeBuilder, build_training_data, image_rng
from ..losses import detector_loss
from ..metrics import centre_inside, detection_summary
from ..models.face_detector import CenterCodec, DetectSettings, FaceDetector, box_iou, detect, nms, run_level
from .stages import autocast, backward_and_step
from .trainer import Trainer, resolve_device, seed_everything, set_threads


class DetectorStage:
    """The face detector, its optimiser, composite training images and validation composites."""

    name = "face_detector"
    best_metric = "val/ap50"
    lower_is_better = False

    def __init__(
        self,
        cfg: DetectorConfig,
        device: torch.device,
        builder: CompositeBuilder | None = None,
        val: list[Composite] | None = None,
    ) -> None:
        self.cfg, self.device = cfg, device
        if builder is None:
            builder, val = build_training_data(cfg.data, progress=cfg.train.progress)
        self.builder, self.val = builder, val or []
        self.model = FaceDetector(cfg.model)
        if cfg.init:
            self.init_from(cfg.init)
        self.model = self.model.to(device)
        self.codec = CenterCodec(cfg.model)
        t = cfg.train
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=t.lr, weight_decay=t.weight_decay)

    def init_from(self, path: str | Path) -> None:
        """Start from the detector of a weights file or checkpoint (``init``; fp16 exports are widened)."""
        from ..checkpoint import load_module, read_checkpoint

        tensors, _ = read_checkpoint(path)
        load_module(self.model, tensors, "detector", str(path))

    @property
    def modules(self) -> dict[str, torch.nn.Module]:
        return {"detector": self.model}

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"detector": self.optimizer}

    def train_step(self, step: int) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        self.model.train()
        images, boxes, ignore = self.builder.batch(cfg.train.seed, step, cfg.train.batch_size)
        tg = self.codec.encode(boxes, images.shape[-2], images.shape[-1], ignore)
        dev = self.device
        with autocast(dev, cfg.train.amp):
            out = self.model(images.to(dev))
        loss = detector_loss(
            out.heat,
            out.size,
            out.offset,
            tg.heat.to(dev),
            tg.weight.to(dev),
            tg.size.to(dev),
            tg.offset.to(dev),
            tg.mask.to(dev),
            cfg.loss,
        )
        backward_and_step(loss, "detector", list(self.model.parameters()), self.optimizer, cfg.train.grad_clip)
        return {f"train/{k}": v for k, v in loss.parts.items()}

    @torch.no_grad()
    def predict(self, images: list[torch.Tensor]) -> list[np.ndarray]:
        """Detections ``(N, 5)`` of each image at its own scale (scores down to 0.05, for the AP)."""
        self.model.eval()
        m = self.cfg.model
        settings = DetectSettings(threshold=0.05, nms_iou=m.nms_iou)
        out = []
        for im in images:
            b = run_level(self.model, self.codec, im.to(self.device), settings).cpu()
            out.append(b[nms(b[:, :4], b[:, 4], m.nms_iou)].numpy())
        return out

    def evaluate(self) -> dict[str, float]:
        if not self.val:
            return {}
        preds = self.predict([c.image for c in self.val])
        truths = [c.boxes.numpy() for c in self.val]
        ignores = [c.ignore.numpy() for c in self.val]
        th = self.cfg.model.threshold
        res: dict[str, float] = {}
        for iou in (0.3, 0.5):
            s = detection_summary(preds, truths, iou, th, ignores)
            tag = f"{int(iou * 100)}"
            res[f"val/ap{tag}"] = s["ap"]
            res[f"val/recall{tag}"] = s["recall"]
            res[f"val/fp{tag}"] = s["fp_per_image"]
        small = [t[np.maximum(t[:, 2] - t[:, 0], t[:, 3] - t[:, 1]) < 20] for t in truths]
        if sum(len(t) for t in small):  # recall of the faces under 20 px alone
            res["val/recall30_under20px"] = detection_summary(preds, small, 0.3, th)["recall"]
        return res


MINED_SIZE = 32  # px of a stored mined negative (a square of 1.25 x the detection's larger side)


@torch.no_grad()
def mine_hard_negatives(stage: DetectorStage, images: int, threshold: float, seed: int) -> torch.Tensor:
    """Hard negatives ``(N, 3, 32, 32)`` uint8 (``data.mine_images``): the stage's detector (its ``init``) runs
    on ``images`` training composites (a stream of their own) and on every background photo; each detection at
    ``threshold`` or more with IoU < 0.1 to every face and ignored region, its centre on none, is cut out as a
    square of 1.25 x its larger side. Training faces only: validation composites are never mined."""
    from tqdm.auto import tqdm

    stage.model.eval()
    settings = DetectSettings(threshold=threshold, nms_iou=stage.cfg.model.nms_iou)
    sources = [(stage.builder.compose(image_rng(seed, 0, i, stream=2)), None) for i in range(images)]
    sources += [(None, bg) for bg in stage.builder.backgrounds]
    patches: list[torch.Tensor] = []
    for comp, bg in tqdm(sources, desc="mining negatives", disable=not stage.cfg.train.progress, leave=False):
        image = comp.image if comp is not None else bg.float() / 255  # type: ignore[union-attr]
        found = detect(stage.model, image.to(stage.device), settings).cpu()
        if comp is not None and len(found):
            faces = torch.cat([comp.boxes, comp.ignore])
            if len(faces):
                inside = torch.from_numpy(centre_inside(found.numpy(), faces.numpy()))
                found = found[(box_iou(found[:, :4], faces).max(1).values < 0.1) & ~inside]
        h, w = image.shape[-2:]
        for x0, y0, x1, y1, _ in found.tolist():
            side = min(int(round(1.25 * max(x1 - x0, y1 - y0))), h, w)
            if side < 4:
                continue
            left = int(min(max(round((x0 + x1 - side) / 2), 0), w - side))
            top = int(min(max(round((y0 + y1 - side) / 2), 0), h - side))
            crop = image[None, :, top : top + side, left : left + side].float()
            patches.append(degradation.quantize(degradation.resize(crop, MINED_SIZE).clamp(0, 1))[0])
    if not patches:
        return torch.zeros(0, 3, MINED_SIZE, MINED_SIZE, dtype=torch.uint8)
    return (torch.stack(patches) * 255).round().to(torch.uint8)


def mined_negatives(out: Path, stage: DetectorStage) -> torch.Tensor:
    """The run's mined negatives: ``<out>/hard-negatives.safetensors`` when it exists (a resumed run trains on
    exactly the same), else mined now and written there first."""
    from safetensors.torch import load_file, save_file

    path = out / "hard-negatives.safetensors"
    if path.is_file():
        return load_file(str(path))["patches"]
    d = stage.cfg.data
    patches = mine_hard_negatives(stage, d.mine_images, d.mine_threshold, stage.cfg.train.seed)
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"patches": patches}, str(tmp), metadata={"init": stage.cfg.init, "threshold": str(d.mine_threshold)})
    tmp.replace(path)
    return patches


def train_detector(cfg: DetectorConfig, out_dir: str | Path | None = None) -> dict[str, float]:
    """Train (or resume) the face detector as configured; returns the last validation metrics."""
    out = Path(out_dir or cfg.train.out_dir)
    set_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    stage = DetectorStage(cfg, resolve_device(cfg.train.device))
    if cfg.data.mine_images:
        mined = mined_negatives(out, stage)
        print(f"sht train-detector: {len(mined)} mined hard negatives ({out / 'hard-negatives.safetensors'})")
        stage.builder.add_mined(mined)
    metrics = Trainer(cfg, stage, out).fit()  # type: ignore[arg-type]
    export_run(out, cfg, stage)
    return metrics


PHOTO_AREA = 640 * 480  # the unit of ``model.calibrate_fp``: false positives per 640x480 of photo


def calibrate_threshold(stage: DetectorStage, fp_per_photo: float) -> float:
    """The lowest score threshold at which the validation composites have at most ``fp_per_photo`` false positives
    per 640x480 of image area (IoU > 0.3 with the landmark box; ``model.calibrate_fp``), within (0, 1). Per area,
    not per image: a 160 px validation composite is 1/12 of a 640x480 photo, and a rate per image would allow
    12 times the false positives on the photos the detector is for."""
    images = [c.image for c in stage.val]
    preds = stage.predict(images)
    truths = [c.boxes.numpy() for c in stage.val]
    ignores = [c.ignore.numpy() for c in stage.val]
    photos = sum(im.shape[-1] * im.shape[-2] for im in images) / PHOTO_AREA
    allowed = fp_per_photo * photos  # false positives over the whole validation set
    scores = np.unique(np.concatenate([p[:, 4] for p in preds] + [np.zeros(0)]))
    for th in scores:  # ascending: the first that meets the target keeps the most recall
        fp = detection_summary(preds, truths, 0.3, float(th), ignores)["fp_per_image"] * len(images)
        if th > 0 and fp <= allowed + 1e-9:
            return float(min(th, 0.99))
    return 0.99


def export_run(out: Path, cfg: DetectorConfig, stage: DetectorStage | None = None) -> Path:
    """``<out>/face-detector.safetensors``: the best checkpoint's detector (the last when there is no best), fp16,
    its threshold calibrated on the validation composites when ``model.calibrate_fp`` > 0 (needs ``stage``).
    Rerunning a finished run's training command only exports again (a new calibration, the same weights)."""
    from ..checkpoint import load_module, read_checkpoint
    from ..export import export_face_detector

    ckpt = out / "checkpoints" / "best.safetensors"
    if not ckpt.is_file():
        ckpt = out / "checkpoints" / "last.safetensors"
    (out / "config.yaml").write_text(dump_yaml(cfg))
    threshold = None
    if stage is not None and stage.val and cfg.model.calibrate_fp > 0:
        tensors, _ = read_checkpoint(ckpt)
        load_module(stage.model, tensors, "detector", str(ckpt))
        threshold = calibrate_threshold(stage, cfg.model.calibrate_fp)
    note = f"run {out.name}" + (
        f"; threshold {threshold:.3f} for {cfg.model.calibrate_fp:g} FP per 640x480 of validation composites"
        if threshold is not None
        else ""
    )
    return export_face_detector(ckpt, out / "face-detector.safetensors", note=note, threshold=threshold)


__all__ = ["DetectorStage", "export_run", "mine_hard_negatives", "mined_negatives", "train_detector"]
