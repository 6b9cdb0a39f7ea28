"""``sht demo``: the main job on the embedded default data.

By default (:func:`run_demo`, under a minute on a CPU) the shipped release weights run on real faces that ship
inside scikit-image -- the 100 real 25x25 faces of ``skimage.data.lfw_subset()`` and the astronaut photo reduced
to 16/32/64 px -- and on generated faces with exactly known landmarks (NME and PSNR against bicubic), and
``report.html`` / ``report.md`` show landmark overlays and LR | bicubic | hallucinated panels.

``sht demo --train`` (:func:`train_demo`) instead trains the ``small`` DHLN on generated faces
(:mod:`sht.data.synthetic`) for a few minutes, evaluates it at 16/32/64 px against bicubic upsampling and the mean
shape, and writes the same kind of report.
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

LR_SIZES = (16, 32, 64)


def train_demo(
    out_dir: str | Path = "demo-out",
    steps: int = 1200,
    train_faces: int = 2000,
    test_faces: int = 200,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Train and evaluate a small DHLN on generated faces; returns the path of ``report.md``."""
    from .train import SupervisedStage, Trainer, seed_everything, set_threads
    from .train.logging import read_metrics

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

    from .data import degradation
    from .data.synthetic import generate
    from .data.transforms import canonical_crop, image_to_tensor, tensor_to_image
    from .infer import Detector
    from .report import draw_landmarks

    out = Path(out_dir)
    det = Detector(weights)
    photo = skimage_photo("astronaut.png")
    found = det.detect(photo)
    subjects: list[tuple[str, Image.Image, np.ndarray]] = []
    lines = []
    if found:
        f = found[0]
        lines.append(
            f"Astronaut photo (512x512): face found by the {det.face_detector_name} face detector at box "
            f"{tuple(round(v) for v in f.box)}, refined canonical crop side {f.crop[2]:.0f} px."
        )
        subjects.append(("astronaut", photo, f.landmarks))
    else:
        lines.append(f"Astronaut photo: no face found by the {det.face_detector_name} face detector.")
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


# ----------------------------------------------------------------------------------------------------------------
# The default demo: release weights on real and generated faces, no training
# ----------------------------------------------------------------------------------------------------------------

Block = tuple  # ("h2", text) | ("p", text) | ("table", headers, rows) | ("img", file name, caption)


def _markdown(title: str, blocks: list[Block]) -> str:
    out = [f"# {title}", ""]
    for b in blocks:
        if b[0] == "h2":
            out += [f"## {b[1]}", ""]
        elif b[0] == "p":
            out += [b[1], ""]
        elif b[0] == "table":
            out += [markdown_table(b[1], b[2]), ""]
        elif b[0] == "img":
            out += [f"![{b[2]}]({b[1]})", ""]
    return "\n".join(out)


def _html(title: str, blocks: list[Block]) -> str:
    import html

    e = html.escape
    out = [
        "<!doctype html>",
        f"<html><head><meta charset='utf-8'><title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
        "img{max-width:100%;image-rendering:pixelated}figure{margin:1em 0}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    for b in blocks:
        if b[0] == "h2":
            out.append(f"<h2>{e(b[1])}</h2>")
        elif b[0] == "p":
            out.append(f"<p>{e(b[1]).replace('`', '')}</p>")
        elif b[0] == "table":
            head = "".join(f"<th>{e(str(h))}</th>" for h in b[1])
            rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
            out.append(f"<table><tr>{head}</tr>{rows}</table>")
        elif b[0] == "img":
            out.append(f"<figure><img src='{e(b[1])}' alt='{e(b[2])}'><figcaption>{e(b[2])}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


def skimage_photo(name: str = "astronaut.png"):  # noqa: ANN201 - a PIL image
    """A photo that ships inside scikit-image, read straight from the package with PIL (``skimage.data.astronaut()``
    goes through its fetcher and image-IO plugins, seconds on a small CPU)."""
    import skimage.data
    from PIL import Image

    path = Path(skimage.data.__file__).parent / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not in this scikit-image installation")
    return Image.open(path).convert("RGB")


def lfw_faces(count: int = 100):  # noqa: ANN201 - list of PIL images
    """The real 25x25 face images of scikit-image's ``lfw_subset()`` (its first 100 images are faces)."""
    import numpy as np
    from PIL import Image
    from skimage import data as skdata

    faces = skdata.lfw_subset()[:count]
    return [Image.fromarray((f * 255).round().astype(np.uint8)).convert("RGB") for f in faces]


def _inputs(pred) -> str:  # noqa: ANN001 - a Predictor or PredictorFamily
    """``32 px network input`` or, for a family, each member's input and the crops it takes."""
    members = getattr(pred, "members", None)
    if not members:
        return f"{pred.input_size} px network input"
    parts = [f"{p.input_size} px input for " + (f"crops up to {m} px" if m else "larger crops") for p, m in members]
    return "a family of models chosen by the crop's size: " + "; ".join(parts)


def run_demo(out_dir: str | Path = "demo-out", weights: str | Path | None = None, faces: int = 48) -> Path:
    """The shipped model on real faces (LFW 25 px, the astronaut at 16/32/64 px) and on ``faces`` generated faces
    (NME against their exact landmarks, PSNR_Y against bicubic); writes ``report.html``, ``report.md``,
    ``results.json`` and the figures; returns the HTML report's path."""
    import numpy as np
    from PIL import Image

    from .data import degradation
    from .data.transforms import CropBox, canonical_crop, crop_image, image_to_tensor, tensor_to_image
    from .infer import Detector
    from .report import draw_landmarks, upscale

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    det = Detector(weights)
    cfg, pred = det.config, det.predictor
    fs = cfg.model.face_size
    blocks: list[Block] = [
        (
            "p",
            f"Weights: `{pred.source}` ({pred.num_parameters / 1e6:.2f}M parameters, {_inputs(pred)}, "
            f"{fs} px hallucinated face; see MODEL_CARD.md). Every face "
            "below is a real or generated face the model never saw in training; nothing was downloaded.",
        )
    ]
    doc: dict = {"weights": pred.source}

    # 1. the 100 real LFW faces of scikit-image, 25 x 25 px: landmarks with the whole image as the face box
    lfw = lfw_faces()
    found = [f[0] for f in det.detect_many(lfw, boxes=[[(0, 0, im.size[0], im.size[1])] for im in lfw])]
    tiles = [draw_landmarks(upscale(im, 100), f.landmarks * 4.0, radius=1.2) for im, f in zip(lfw, found, strict=True)]
    sheet = Image.new("RGB", (1000, 100 * ((len(tiles) + 9) // 10)))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % 10) * 100, (i // 10) * 100))
    sheet.save(out / "lfw_landmarks.png")
    rows = []
    for im, f in list(zip(lfw, found, strict=True))[:8]:
        x0, y0, side = f.crop
        lr = crop_image(im, CropBox(x0, y0, side), max(8, round(side)))  # the crop the model saw, native pixels
        crop_pts = (f.landmarks - [x0, y0]) * fs / side
        rows.append([lr, lr.resize((fs, fs), Image.Resampling.BICUBIC), draw_landmarks(f.face, crop_pts)])
    face_grid(rows, ["LFW crop (25 px face)", "bicubic", "hallucinated + landmarks"], out / "lfw_faces.png")
    blocks += [
        ("h2", f"{len(lfw)} real 25x25 faces (scikit-image's lfw_subset)"),
        ("p", "Landmarks found with the whole 25 px image as the face box (`sht detect IMG --box 0,0,25,25`)."),
        ("img", "lfw_landmarks.png", "68 landmarks on each LFW face (shown 4x)"),
        ("img", "lfw_faces.png", "LR | bicubic | hallucinated face with its landmarks"),
    ]

    # 2. the astronaut photo: face found on the 512 px photo, its canonical crop reduced to 16/32/64 px
    photo = skimage_photo("astronaut.png")
    faces_found = det.detect(photo)
    if faces_found:
        ref = faces_found[0].landmarks
        hr_img, hr_pts, _ = canonical_crop(photo, ref, fs, cfg.data.margin)
        hr = degradation.quantize(image_to_tensor(hr_img)[None].float() / 255)
        rows, table = [], []
        for s in LR_SIZES:
            lr = tensor_to_image(degradation.downsample(hr, s)[0])
            p = pred.predict([lr])[0]
            bic = lr.resize((fs, fs), Image.Resampling.BICUBIC)
            lm = p.landmarks * fs / s
            rows.append([lr, bic, draw_landmarks(p.face if p.face is not None else bic, lm), hr_img])
            agree = float(np.mean(np.linalg.norm(lm - hr_pts, axis=1)) / np.linalg.norm(hr_pts[36] - hr_pts[45]))
            table.append([s, f"{agree * 100:.2f}"])
        face_grid(rows, ["LR", "bicubic", "hallucinated + landmarks", "HR crop"], out / "astronaut.png")
        doc["astronaut_agreement_nme"] = {s: float(r[1]) for s, r in zip(LR_SIZES, table, strict=True)}
        blocks += [
            ("h2", "scikit-image's astronaut at 16, 32 and 64 px"),
            (
                "p",
                f"The face is found on the 512 px photo ({det.face_detector_name} face detector, crop refined on "
                "the landmarks); its canonical "
                "crop is reduced to each size. Agreement: NME_io between the landmarks found at that size and those "
                "found on the full-resolution photo.",
            ),
            ("table", ["LR px", "agreement with full resolution, NME_io %"], table),
            ("img", "astronaut.png", "rows 16, 32, 64 px: LR | bicubic | hallucinated + landmarks | HR crop"),
        ]
    else:
        blocks += [
            ("h2", "scikit-image's astronaut"),
            ("p", f"No face found by the {det.face_detector_name} face detector."),
        ]

    # 3. generated faces with exactly known landmarks: accuracy and hallucination against bicubic
    gen = load_sources([f"synthetic:{faces}:4242"], fs, cfg.data.margin, 1.0)
    res = {s: evaluate_model(m.model, gen, m.codec, [s])[s] for s in LR_SIZES for m in [pred.member_for(s)]}
    bic = evaluate_bicubic(gen, LR_SIZES)
    table = []
    for s in LR_SIZES:
        d, b = res[s].summary(), bic[s].summary()
        doc.setdefault("generated", {})[s] = {"model": d, "bicubic": b}
        table.append([s, f"{d['nme']:.2f}", f"{d['fr']:.1f}", f"{d['psnr']:.2f}", f"{b['psnr']:.2f}"])
    for s in LR_SIZES:
        face_grid(
            face_panels(pred.member_for(s).model, gen, pred.member_for(s).codec, s, count=4),
            ["LR", "bicubic", "model", "HR"],
            out / f"generated_{s}px.png",
        )
    blocks += [
        ("h2", f"{faces} generated faces with known landmarks"),
        ("p", "Canonical 128 px crops reduced to each size (bicubic, 8-bit); red: true landmarks, green: found."),
        ("table", ["LR px", "NME_io %", "FR10 %", "PSNR_Y dB", "bicubic PSNR_Y dB"], table),
        *[("img", f"generated_{s}px.png", f"generated faces at {s} px") for s in LR_SIZES],
    ]
    seconds = time.time() - t0
    doc["seconds"] = round(seconds, 1)
    blocks.append(("p", f"This report took {seconds:.0f} s on this machine. `sht demo --train` trains a model."))
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    title = "sht demo: tiny-face landmarks and hallucination with the shipped model"
    (out / "report.md").write_text(_markdown(title, blocks))
    report = out / "report.html"
    report.write_text(_html(title, blocks))
    return report
