"""``sht demo``: the main job on the embedded default data, end to end on a CPU in a few minutes.

Generates faces with known landmarks (:mod:`sht.data.synthetic`), trains the ``small`` DHLN on them, evaluates it
at 16/32/64 px against bicubic upsampling and the mean shape, and writes ``report.md`` with a table and figures.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .config import load_config
from .data.dataset import load_sources, mean_shape
from .data.heatmaps import HeatmapCodec
from .evaluation import evaluate_bicubic, evaluate_mean_shape, evaluate_model, face_panels
from .infer import Predictor
from .report import face_grid, markdown_table, plot_ced, plot_curves
from .train import SupervisedStage, Trainer, seed_everything, set_threads
from .train.logging import read_metrics

LR_SIZES = (16, 32, 64)


def run_demo(
    out_dir: str | Path = "demo-out",
    steps: int = 1200,
    train_faces: int = 2000,
    test_faces: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Train and evaluate a small DHLN on generated faces; returns the path of ``report.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cfg = load_config(
        "small",
        [
            f"data.train=[synthetic:{train_faces}:{seed}]",
            f"data.val=[synthetic:{test_faces}:{seed + 1000}]",
            f"train.steps={steps}",
            f"train.seed={seed}",
            f"train.eval_every={max(steps // 4, 1)}",
            f"train.out_dir={out / 'run'}",
            f"train.progress={progress}",
            "train.tensorboard=false",
        ],
    )
    set_threads(cfg.train.threads)
    seed_everything(seed)
    print(f"generating {train_faces} training and {test_faces} test faces ...", flush=True)
    m = cfg.model
    train_set = load_sources(cfg.data.train, m.face_size, cfg.data.margin, cfg.data.context)
    test_set = load_sources(cfg.data.val, m.face_size, cfg.data.margin, cfg.data.context)
    t_data = time.time() - t0
    stage = SupervisedStage(cfg, torch.device("cpu"), train_faces=train_set, val_faces=test_set)
    print(f"training the small DHLN for {steps} steps of {cfg.train.batch_size} faces ...", flush=True)
    t1 = time.time()
    Trainer(cfg, stage, cfg.train.out_dir).fit()
    t_train = time.time() - t1

    pred = Predictor.from_checkpoint(Path(cfg.train.out_dir) / "checkpoints" / "last.safetensors")
    codec: HeatmapCodec = pred.codec
    res = evaluate_model(pred.model, test_set, codec, LR_SIZES)
    bic = evaluate_bicubic(test_set, LR_SIZES)
    mean = evaluate_mean_shape(test_set, mean_shape(train_set), LR_SIZES)
    rows, doc = (
        [],
        {
            "steps": steps,
            "train_faces": train_faces,
            "test_faces": test_faces,
            "seconds": {"data": round(t_data, 1), "train": round(t_train, 1)},
            "results": {},
        },
    )
    for s in LR_SIZES:
        d, b, ms = res[s].summary(), bic[s].summary(), mean[s].summary()
        doc["results"][s] = {"dhln": d, "bicubic": b, "mean_shape": ms}
        rows.append([s, "mean shape", f"{ms['nme']:.2f}", f"{ms['fr']:.1f}", f"{ms['auc']:.3f}", "-", "-"])
        rows.append([s, "bicubic", "-", "-", "-", f"{b['psnr']:.2f}", f"{b['ssim']:.4f}"])
        rows.append(
            [
                s,
                "**DHLN (small)**",
                f"{d['nme']:.2f}",
                f"{d['fr']:.1f}",
                f"{d['auc']:.3f}",
                f"{d['psnr']:.2f}",
                f"{d['ssim']:.4f}",
            ]
        )
    table = markdown_table(["LR px", "method", "NME_io %", "FR10 %", "AUC10", "PSNR_Y dB", "SSIM_Y"], rows)
    plot_ced(
        {**{f"DHLN {s}px": res[s].nme for s in LR_SIZES}, "mean shape": mean[16].nme},
        out / "ced.png",
        title="generated test faces",
    )
    for s in LR_SIZES:
        face_grid(
            face_panels(pred.model, test_set, codec, s),
            [f"LR {s}px", "bicubic", "DHLN + landmarks", "HR"],
            out / f"faces_{s}px.png",
        )
    log = read_metrics(Path(cfg.train.out_dir) / "metrics.csv")
    plot_curves(
        {k: v for k, v in log.items() if k in ("train/heatmap", "train/pixel", "train/gradient")},
        out / "training_loss.png",
        "training losses",
        logy=True,
    )
    plot_curves(
        {k: v for k, v in log.items() if k.startswith("val/nme@")},
        out / "validation_nme.png",
        "validation NME_io (%)",
    )
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    report = out / "report.md"
    report.write_text(
        "# sht demo: DHLN on generated faces\n\n"
        f"Trained the `small` preset ({sum(p.numel() for p in pred.model.parameters()) / 1e6:.2f}M parameters) "
        f"for {steps} steps of {cfg.train.batch_size} on {train_faces} generated faces "
        f"({t_train / 60:.1f} min on this machine; data generation {t_data:.0f} s), LR sizes "
        f"{', '.join(map(str, LR_SIZES))} px mixed in training (16 px twice as often). "
        f"Tested on {test_faces} other generated faces: "
        "canonical 128 px crop, bicubic down to the LR size, the network hallucinates the 128 px face.\n\n"
        f"{table}\n\n"
        "![CED](ced.png)\n\n![faces 16px](faces_16px.png) ![faces 32px](faces_32px.png) "
        "![faces 64px](faces_64px.png)\n\n![training loss](training_loss.png) "
        "![validation NME](validation_nme.png)\n\n"
        f"Weights: `{Path(cfg.train.out_dir) / 'checkpoints' / 'last.safetensors'}` -- try "
        "`sht detect CROP.png --weights ... --out out.json --save-faces faces/`.\n"
    )
    try:
        section, _ = showcase(out)
    except Exception as exc:  # noqa: BLE001 - the trained-model report stands on its own
        section = f"(release-weights showcase skipped: {exc})"
    with open(report, "a") as fh:
        fh.write("\n## Release weights on a real photo and generated faces\n\n" + section + "\n")
    print(table)
    return report


def showcase(out_dir: str | Path, weights: str | Path | None = None, faces: int = 3) -> tuple[str, list[Path]]:
    """The release weights on scikit-image's astronaut photo and on generated faces, degraded to 16/32/64 px:
    LR | bicubic | hallucinated | landmarks panels. Returns a markdown section and the figure paths."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    from .data import degradation
    from .data.synthetic import generate
    from .data.transforms import canonical_crop, image_to_tensor, tensor_to_image
    from .infer import Detector
    from .report import draw_landmarks

    out = Path(out_dir)
    det = Detector(weights)
    photo = Image.fromarray(skdata.astronaut())
    found = det.detect(photo)
    subjects: list[tuple[str, Image.Image, np.ndarray]] = []
    lines = []
    if found:
        f = found[0]
        lines.append(
            f"Astronaut photo (512x512): face found by the Haar cascade at box "
            f"{tuple(round(v) for v in f.box)}, refined canonical crop side {f.crop[2]:.0f} px."
        )
        subjects.append(("astronaut", photo, f.landmarks))
    else:
        lines.append("Astronaut photo: no face found by the Haar cascade.")
    for i, (img, pts) in enumerate(generate(faces, seed=4242)):
        subjects.append((f"generated {i}", img, pts))
    figures = []
    for s in LR_SIZES:
        rows = []
        for _name, img, pts in subjects:
            hr_img, _, _ = canonical_crop(img, pts, 128, det.config.data.margin)
            hr = degradation.quantize(image_to_tensor(hr_img)[None].float() / 255)
            lr = tensor_to_image(degradation.downsample(hr, s)[0])
            pred = det.predictor.predict([lr])[0]
            bic = lr.resize((128, 128), Image.Resampling.BICUBIC)
            face = pred.face if pred.face is not None else bic
            rows.append([lr, bic, draw_landmarks(face, pred.landmarks * 128 / s), hr_img])
        path = out / f"release_{s}px.png"
        face_grid(rows, [f"LR {s}px", "bicubic", "hallucinated + landmarks", "HR crop"], path)
        figures.append(path)
    lines.append(
        "The release model (`sht.Detector()`, weights shipped in the package) on these faces degraded to 16/32/64 px:"
    )
    lines.append("")
    lines += [f"![release {s}px]({p.name})" for s, p in zip(LR_SIZES, figures, strict=True)]
    return "\n".join(lines), figures
