"""Speed and size: parameters, FLOPs, latency, throughput, training steps, memory, data pipeline, cost growth.

Every timing is the median of repeated runs after warm-up on an otherwise idle machine; optimisations are listed as
measured before/after pairs. CPU always; CUDA rows (bf16 autocast, paper preset at batch 1 vs the paper's 80 FPS)
when a GPU is present. Rewrites the ``speed-<device>`` block of benchmarks/RESULTS.md and
benchmarks/figures/speed_growth_<device>.png. The throughput section (CPU, the shipped model end to end, torch and
ONNX Runtime, with and without the face, against dlib's shape predictor) writes the ``speed-throughput-cpu`` block
and benchmarks/results/speed-throughput-cpu.json.

    python benchmarks/speed.py                 # CPU, a few minutes, then the throughput section
    python benchmarks/speed.py --device cuda   # on a GPU machine
    python benchmarks/speed.py --only throughput   # shipped model vs dlib, faces/s (``speed-throughput-cpu``)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from results_block import update_block
from torch.utils.flop_counter import FlopCounterMode

from sht.config import load_config
from sht.data.dataset import BatchBuilder, crop_samples, load_source, step_generator
from sht.data.formats import scan_pts_folder
from sht.data.heatmaps import HeatmapCodec
from sht.data.transforms import canonical_crop, image_to_tensor
from sht.models import DHLN, FPTN, AppearanceDiscriminator, ShapeDiscriminator, count_parameters
from sht.report import markdown_table

HERE = Path(__file__).resolve().parent


def median_time(fn, device: torch.device, warmup: int = 3, repeat: int = 10, budget: float = 20.0) -> float:
    """Median seconds of ``fn()`` (synchronising CUDA), stopping early once ``budget`` seconds are spent."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < repeat and (len(times) < 3 or time.perf_counter() - start < budget):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def model_for(preset: str, streams: str, device: torch.device, channels_last: bool = True, **over) -> DHLN:
    cfg = load_config(preset, [f"model.streams={streams}", *[f"model.{k}={v}" for k, v in over.items()]])
    m = DHLN(cfg.model).to(device).eval()
    return m.to(memory_format=torch.channels_last) if channels_last else m


def inputs_for(m: DHLN, batch: int, device: torch.device, channels_last: bool = True):
    x = torch.rand(batch, 3, m.cfg.input_size, m.cfg.input_size, device=device)
    base = torch.rand(batch, 3, m.cfg.face_size, m.cfg.face_size, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, base


def gflops(module: torch.nn.Module, *args) -> float:
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        module(*args)
    return fc.get_total_flops() / 1e9


def matmul_peak(device: torch.device, dtype=torch.float32) -> float:
    """Measured GFLOP/s of a large matrix product (the machine's practical peak for dense work)."""
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.rand(n, n, device=device, dtype=dtype), torch.rand(n, n, device=device, dtype=dtype)
    t = median_time(lambda: a @ b, device, warmup=2, repeat=5)
    return 2 * n**3 / t / 1e9


def infer_fn(m: DHLN, x, base, device: torch.device, amp: bool = False, mode: str = "inference"):
    def run():
        ctx = torch.inference_mode() if mode == "inference" else torch.no_grad()
        with ctx:
            if amp and device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    m(x, base)
            else:
                m(x, base)

    return run


def peak_rss_mb(setup: str, run: str) -> float:
    """Peak resident memory (MB) that ``run`` adds in a fresh Python process once ``setup`` has run: the
    process's high-water mark after ``run`` minus its RSS before it (Linux ``/proc/self/status``; unlike
    ``ru_maxrss``, ``VmHWM`` does not inherit the parent's peak across fork + exec)."""
    code = (
        "import torch, sht.models, sht.config\n"
        "def kb(key):\n"
        "    return next(int(v.split()[0]) for k, v in (ln.split(':', 1) for ln in open('/proc/self/status')) "
        "if k == key)\n" + setup + "\nrss = kb('VmRSS')\n" + run + "\nprint(kb('VmHWM') - rss)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return float("nan")
    return max(int(out.stdout.split()[-1]), 0) / 1024


def section_sizes(presets: list[str], device: torch.device) -> tuple[str, dict]:
    rows, doc = [], {}
    for p in presets:
        for s in ("shn", "fhs", "dhln"):
            m = model_for(p, s, device)
            x, base = inputs_for(m, 1, device)
            g = gflops(m, x, base)
            rows.append([p, s.upper(), f"{count_parameters(m) / 1e6:.2f}M", f"{g:.2f}"])
            doc[f"{p}/{s}"] = {"params": count_parameters(m), "gflops": g}
        cfg = load_config(p)
        f = cfg.model.face_size
        g_parts = [
            FPTN(cfg.fptn, 68, f),
            AppearanceDiscriminator.from_config(cfg.fptn),
            ShapeDiscriminator.from_config(cfg.fptn, 68),
        ]
        img, hm = torch.rand(1, 3, f, f), torch.rand(1, 68, cfg.model.input_size, cfg.model.input_size)
        fl = [gflops(g_parts[0], img, hm, hm), gflops(g_parts[1], img, img), gflops(g_parts[2], hm, img)]
        rows.append(
            [
                p,
                "FPTN / D_A / D_S (training only)",
                " / ".join(f"{count_parameters(x) / 1e6:.2f}M" for x in g_parts),
                " / ".join(f"{v:.2f}" for v in fl),
            ]
        )
    return markdown_table(["preset", "network", "parameters", "GFLOPs / image (forward)"], rows), doc


def section_inference(presets: list[str], device: torch.device, batches: dict[str, list[int]]) -> tuple[str, dict]:
    rows, doc = [], {}
    for p in presets:
        lat = {}
        for s in ("shn", "fhs", "dhln"):
            m = model_for(p, s, device)
            x1, b1 = inputs_for(m, 1, device)
            t1 = median_time(infer_fn(m, x1, b1, device, amp=device.type == "cuda"), device)
            lat[s] = t1
            cells = [p, s.upper(), f"{t1 * 1e3:.1f}", f"{1 / t1:.0f}"]
            for b in batches[p]:
                xb, bb = inputs_for(m, b, device)
                tb = median_time(infer_fn(m, xb, bb, device, amp=device.type == "cuda"), device, repeat=5)
                cells.append(f"{b / tb:.0f}")
                doc[f"{p}/{s}/b{b}"] = b / tb
            cells += ["-"] * (2 - len(batches[p]))
            doc[f"{p}/{s}/latency_ms"] = t1 * 1e3
            rows.append(cells)
        rows.append([p, "**DHLN / SHN latency**", f"{lat['dhln'] / lat['shn']:.2f}x", "", "", ""])
        doc[f"{p}/ratio"] = lat["dhln"] / lat["shn"]
    head = ["preset", "network", "batch-1 latency (ms)", "batch-1 FPS", "images/s (batch A)", "images/s (batch B)"]
    return markdown_table(head, rows), doc


def section_training(device: torch.device, vgg: str, presets: list[str]) -> tuple[str, dict]:
    from sht.train import FPTNStage, JointStage, SupervisedStage

    rows, doc = [], {}
    for p in presets:
        cfg = load_config(p, [f"fptn.vgg_weights={vgg}", f"train.device={device.type}"])
        faces = load_source("synthetic:64:1", cfg.model.face_size, cfg.data.margin, cfg.data.context)
        for name, stage in (
            ("DHLN step (Eq. 4)", SupervisedStage(cfg, device, train_faces=faces)),
            ("FPTN step (Eq. 5-8)", FPTNStage(cfg, device, train_faces=faces)),
            ("SHT step (DHLN + FPTN + D_A + D_S, Eq. 9)", JointStage(cfg, device, train_faces=faces)),
        ):
            step = [0]

            def run(stage=stage, step=step):
                stage.train_step(step[0])
                step[0] += 1

            t = median_time(run, device, warmup=2, repeat=5, budget=60)
            ips = cfg.train.batch_size / t
            rows.append([p, name, f"{t:.3f}", f"{ips:.1f}"])
            doc[f"{p}/{name}"] = ips
    return markdown_table(["preset", "step (batch 16)", "seconds / step", "images / s"], rows), doc


PARTS = {
    "stem": "hourglass stream",
    "units": "hourglass stream",
    "heads": "hourglass stream",
    "merges": "hourglass stream",
    "sr_stem": "face stream (SR modules + tail)",
    "sr_modules": "face stream (SR modules + tail)",
    "sr_tail": "face stream (SR modules + tail)",
    "fu1": "FUBlock1 (Q' = Q + Q * sigmoid(RB(P)))",
    "fu2": "FUBlock2 (P' = P + conv(P || Q'))",
}


def section_profile(device: torch.device, batch: int) -> tuple[str, dict]:
    """Where the paper DHLN's time goes: forward hooks time each part, FlopCounterMode counts its FLOPs."""
    m = model_for("paper", "dhln", device)
    x, base = inputs_for(m, batch, device)
    spent: dict[str, float] = dict.fromkeys(set(PARTS.values()), 0.0)
    starts: dict[int, float] = {}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def pre(mod, _inp):
        sync()
        starts[id(mod)] = time.perf_counter()

    def post_for(group: str):
        def post(mod, _inp, _out):
            sync()
            spent[group] += time.perf_counter() - starts.pop(id(mod))

        return post

    hooks = []
    for name, child in m.named_children():
        if name in PARTS:
            mods = list(child) if isinstance(child, torch.nn.ModuleList) else [child]
            for mod in mods:
                hooks += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post_for(PARTS[name]))]
    runs = []
    for i in range(8):
        for k in spent:
            spent[k] = 0.0
        sync()
        t = time.perf_counter()
        with torch.inference_mode():
            m(x, base)
        sync()
        if i >= 3:
            runs.append((time.perf_counter() - t, dict(spent)))
    for h in hooks:
        h.remove()
    total = statistics.median(r[0] for r in runs)
    part_t = {k: statistics.median(r[1][k] for r in runs) for k in spent}
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        m(x, base)
    by_module = fc.get_flop_counts()
    flops = dict.fromkeys(spent, 0.0)
    for key, counts in by_module.items():  # "DHLN.stem", "DHLN.units.0", ...: the parts the hooks timed
        parts = key.split(".")
        if parts[0] == "DHLN" and len(parts) in (2, 3) and parts[1] in PARTS and parts[-1] != "body":
            if len(parts) == 2 or parts[2].isdigit():
                flops[PARTS[parts[1]]] += sum(counts.values()) / 1e9 / batch
    order = ["hourglass stream", *[g for g in dict.fromkeys(PARTS.values()) if g != "hourglass stream"]]
    rows = [[g, f"{flops[g]:.2f}", f"{part_t[g] * 1e3:.1f}", f"{100 * part_t[g] / total:.0f}%"] for g in order]
    rest = total - sum(part_t.values())
    rows.append(["other (outputs, residual to bicubic)", "-", f"{rest * 1e3:.1f}", f"{100 * rest / total:.0f}%"])
    doc = {"total_ms": total * 1e3, "parts_ms": {k: v * 1e3 for k, v in part_t.items()}, "gflops": flops}
    return markdown_table(["part of paper DHLN", "GFLOPs / image", f"ms (batch {batch})", "share"], rows), doc


def profile_note(prof: dict, ratio: float) -> str:
    """The explanation asked for when DHLN / SHN latency exceeds 1.3x, computed from the profile."""
    ms, gf = prof["parts_ms"], prof["gflops"]
    hg = ms["hourglass stream"]
    extra = {k: v for k, v in ms.items() if k != "hourglass stream"}
    share = ", ".join(f"{k} {v / hg * 100:.0f}%" for k, v in extra.items())
    face = "face stream (SR modules + tail)"
    verdict = "within" if ratio <= 1.3 else "above"
    return (
        f"DHLN / SHN = {ratio:.2f}x is {verdict} the 1.3x target. Relative to the hourglass stream's "
        f"{hg:.1f} ms, the extra parts cost: {share}. The face stream is the paper's design (4 modules x 4 SRBlocks, "
        f"64 channels, all at the 64x64 input resolution, then a pixel-shuffle tail to 128x128): "
        f"{gf[face]:.1f} GFLOPs against the hourglass stream's {gf['hourglass stream']:.1f}, so its cost follows "
        "from its FLOPs, not from overhead; FUBlock2 is a 1x1 convolution (a 3x3 one would cost more than the "
        "whole face stream). Reaching 1.3x would need a narrower or shallower face stream than the paper's."
    )


def section_pipeline(data: Path | None) -> tuple[str, dict]:
    """Data pipeline rates, with the per-sample reference implementation as the 'before'."""
    src = data / "300w" / "helen" / "trainset" if data is not None else None
    if src is not None and src.is_dir():
        samples = scan_pts_folder(src).samples[:200]
        label = "Helen train"
    else:
        from sht.data.synthetic import write_folder

        tmp = Path("/tmp/sht-speed-faces")
        write_folder(tmp, 200, seed=3)
        samples = scan_pts_folder(tmp).samples
        label = "generated faces"
    t = time.perf_counter()
    faces = crop_samples(samples, 128, 1.3, 1.5)
    crop_rate = len(samples) / (time.perf_counter() - t)
    cfg = load_config("small")
    codec = HeatmapCodec.from_config(cfg)
    builder = BatchBuilder(faces, 32, codec, cfg.data.lr_sizes, cfg.data.augment)
    step = [0]

    def batched():
        builder.build(torch.arange(16) % len(faces), step_generator(0, step[0]))
        step[0] += 1

    tb = median_time(batched, torch.device("cpu"), repeat=20)
    rng = np.random.default_rng(0)

    def per_sample():  # the classic pipeline: PIL decode, crop, augment, degrade and encode one sample at a time
        for s in samples[:16]:
            img = Image.open(s.image).convert("RGB").rotate(float(rng.uniform(-20, 20)), Image.BICUBIC)
            crop, pts, _ = canonical_crop(img, s.points, 128, 1.3)
            lr = crop.resize((16, 16), Image.BICUBIC).resize((32, 32), Image.BICUBIC)
            image_to_tensor(lr)
            hm = np.zeros((68, 32, 32), np.float32)
            ys, xs = np.mgrid[0:32, 0:32] + 0.5
            for k, (x, y) in enumerate(pts / 4):
                hm[k] = np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 1.5**2))

    tp = median_time(per_sample, torch.device("cpu"), repeat=5)
    doc = {"crop_cache_images_per_s": crop_rate, "batched_samples_per_s": 16 / tb, "per_sample_samples_per_s": 16 / tp}
    rows = [
        ["decode + canonical crop (once, cached)", f"{crop_rate:.0f} images/s", label],
        [
            "per-sample PIL pipeline (decode, rotate, crop, degrade, per-landmark heatmaps) -- before",
            f"{16 / tp:.0f} samples/s",
            "reference",
        ],
        [
            "cached crops + whole-batch tensor warp, colour, degrade, heatmaps (the trainer's) -- after",
            f"{16 / tb:.0f} samples/s",
            f"{tp / tb:.1f}x faster",
        ],
    ]
    return markdown_table(["data pipeline (1 process, as in training)", "rate", "note"], rows), doc


def section_optimisations(device: torch.device) -> tuple[str, dict]:
    """Before/after pairs on the small preset (and torch.compile), outputs compared."""
    rows, doc = [], {}
    ref = model_for("small", "dhln", device, channels_last=False)
    cl = model_for("small", "dhln", device)
    cl.load_state_dict(ref.state_dict())
    for b in (1, 32):
        x, base = inputs_for(ref, b, device, channels_last=False)
        xc = x.contiguous(memory_format=torch.channels_last)
        t_ref = median_time(infer_fn(ref, x, base, device, mode="no_grad"), device)
        t_inf = median_time(infer_fn(ref, x, base, device), device)
        t_cl = median_time(infer_fn(cl, xc, base, device), device)
        with torch.inference_mode():
            d = (ref(x, base).face - cl(xc, base).face).abs().max().item()
        rows.append(
            [f"no_grad -> inference_mode (batch {b})", f"{t_ref * 1e3:.1f} ms", f"{t_inf * 1e3:.1f} ms", "identical"]
        )
        rows.append(
            [f"+ channels_last (batch {b})", f"{t_inf * 1e3:.1f} ms", f"{t_cl * 1e3:.1f} ms", f"max |diff| {d:.1e}"]
        )
        doc[f"channels_last_b{b}"] = (t_inf, t_cl)
    try:
        t0 = time.perf_counter()
        comp = torch.compile(cl)
        x, base = inputs_for(cl, 32, device)
        with torch.inference_mode():
            comp(x, base)
        compile_s = time.perf_counter() - t0
        for b in (1, 32):
            x, base = inputs_for(cl, b, device)
            t_e = median_time(infer_fn(cl, x, base, device), device)
            t_c = median_time(infer_fn(comp, x, base, device), device)
            with torch.inference_mode():
                d = (cl(x, base).face - comp(x, base).face).abs().max().item()
            rows.append(
                [
                    f"+ torch.compile (batch {b}; compile {compile_s:.0f} s)",
                    f"{t_e * 1e3:.1f} ms",
                    f"{t_c * 1e3:.1f} ms",
                    f"max |diff| {d:.1e}",
                ]
            )
            doc[f"compile_b{b}"] = (t_e, t_c)
    except Exception as exc:  # noqa: BLE001 - report and go on
        rows.append(["torch.compile", "-", "-", f"unavailable: {type(exc).__name__}"])
    codec = HeatmapCodec(128, 32, 1.5)
    pts = torch.rand(16, 68, 2) * 100 + 14

    def loop_encode():
        out = torch.zeros(16, 68, 32, 32)
        g = torch.arange(32) + 0.5
        for i in range(16):
            for k in range(68):
                x, y = pts[i, k] / 4
                out[i, k] = torch.exp(-((g[None] - x) ** 2 + (g[:, None] - y) ** 2) / (2 * 1.5**2))
        return out

    t_loop = median_time(loop_encode, torch.device("cpu"))
    t_vec = median_time(lambda: codec.encode(pts), torch.device("cpu"))
    d = (loop_encode() - codec.encode(pts)).abs().max().item()
    rows.append(
        [
            "heatmap encoding, per-landmark loop -> separable batched Gaussians (16 x 68)",
            f"{t_loop * 1e3:.2f} ms",
            f"{t_vec * 1e3:.2f} ms",
            f"max |diff| {d:.1e}",
        ]
    )
    doc["heatmap_encode"] = (t_loop, t_vec)
    if device.type == "cuda":
        m = model_for("paper", "dhln", device)
        x, base = inputs_for(m, 1, device)
        t32 = median_time(infer_fn(m, x, base, device), device)
        t16 = median_time(infer_fn(m, x, base, device, amp=True), device)
        rows.append(
            [
                "paper DHLN fp32 -> bf16 autocast (batch 1)",
                f"{t32 * 1e3:.2f} ms",
                f"{t16 * 1e3:.2f} ms",
                "see test_speed.py tolerance",
            ]
        )
    return markdown_table(["optimisation", "before", "after", "outputs"], rows), doc


def section_growth(device: torch.device, fig: Path) -> tuple[str, dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[float, float, float]]] = {"input size": [], "stacks": [], "batch": []}
    for s in (16, 32, 64, 128):
        m = model_for("small", "dhln", device, input_size=s, face_size=4 * s)
        x, base = inputs_for(m, 8, device)
        t = median_time(infer_fn(m, x, base, device), device, repeat=5)
        mem = (
            peak_rss_mb(
                "from sht.config import load_config; from sht.models import DHLN\n"
                f"m = DHLN(load_config('small', ['model.input_size={s}', 'model.face_size={4 * s}']).model).eval()\n"
                f"x, b = torch.rand(8, 3, {s}, {s}), torch.rand(8, 3, {4 * s}, {4 * s})",
                "with torch.inference_mode(): m(x, b)",
            )
            if device.type == "cpu"
            else float("nan")
        )
        series["input size"].append((s, t * 1e3, mem))
    for n in (1, 2, 4):
        m = model_for("small", "dhln", device, num_stacks=n)
        x, base = inputs_for(m, 8, device)
        series["stacks"].append((n, median_time(infer_fn(m, x, base, device), device, repeat=5) * 1e3, float("nan")))
    m = model_for("small", "dhln", device)
    for b in (1, 8, 32, 128):
        x, base = inputs_for(m, b, device)
        series["batch"].append((b, median_time(infer_fn(m, x, base, device), device, repeat=5) * 1e3, float("nan")))
    figure, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (name, pts) in zip(axes, series.items(), strict=True):
        xs, ts, mems = zip(*pts, strict=True)
        ax.plot(xs, ts, "o-", label="time (ms, batch 8)" if name != "batch" else "time (ms)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel(name + (" (face = 4x input)" if name == "input size" else ""))
        ax.grid(alpha=0.3)
        if not all(np.isnan(mems)):
            ax2 = ax.twinx()
            ax2.plot(xs, mems, "s--", color="tab:red", label="peak memory (MB)")
            ax2.set_ylabel("MB", color="tab:red")
        ax.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"DHLN (small preset) inference cost growth, {device.type}")
    figure.tight_layout()
    fig.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(fig, dpi=110)
    rows = [
        [k, ", ".join(f"{x:g}: {t:.1f} ms" + (f" / {mem:.0f} MB" if not np.isnan(mem) else "") for x, t, mem in v)]
        for k, v in series.items()
    ]
    return markdown_table(["growing", "time (and peak memory) -- DHLN small preset, inference, batch 8"], rows), series


def tiled_crops(count: int, size: int) -> list[Image.Image]:
    """``count`` real-looking crops: scikit-image's 100 LFW faces (25 px), bicubic to ``size`` px, tiled."""
    from sht.demo import lfw_faces

    faces = [f.resize((size, size), Image.Resampling.BICUBIC) for f in lfw_faces(100)]
    return [faces[i % len(faces)] for i in range(count)]


def run_time(fn, repeat: int) -> float:
    """Median wall seconds of ``fn()`` over ``repeat`` runs (after a warm-up the caller does)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def section_throughput(
    faces: int, sizes: list[int], batches: list[int], threads: list[int], repeat: int, units_dir: Path
) -> tuple[str, dict]:
    """Faces/s of the shipped model end to end (``Predictor.predict``: crop -> tensors -> network -> decoding ->
    landmarks in crop pixels), torch and ONNX Runtime, with and without the face, against dlib's 68-point shape
    predictor on the same crops bicubic-upsampled to 128 px with the whole image as its box (as sht.teacher).

    Resumable per unit: every measurement (size, backend, output, threads, batch), dlib per size and the agreement
    per (size, threads) is saved to ``units_dir/<weights hash>-f<faces>-r<repeat>.json`` as it finishes, and a
    rerun measures only what is missing (delete the file to measure again)."""
    from sht.infer import RELEASE_FAMILY, release_predictor, release_weights
    from sht.teacher import DlibTeacher

    release_weights()  # one clear line when the weights are missing
    files = [m[0] for m in RELEASE_FAMILY if m[0].is_file()]  # the release family (each crop by its size)
    units_dir.mkdir(parents=True, exist_ok=True)
    flips = "".join(str(int(m[2])) for m in RELEASE_FAMILY if m[0].is_file())  # the members' flip tests
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files) + flips.encode()).hexdigest()[:12]
    store = units_dir / f"{digest}-f{faces}-r{repeat}.json"
    units: dict = json.loads(store.read_text()) if store.exists() else {}

    def save(key: str, value) -> None:
        units[key] = value
        tmp = store.with_suffix(".tmp")
        tmp.write_text(json.dumps(units, indent=1))
        tmp.replace(store)

    teacher = DlibTeacher()
    rect = teacher.rect(0, 0, 128, 128)
    names = " + ".join(f.name for f in files)
    rows, doc = [], {"faces": faces, "repeat": repeat, "weights": names, "runs": [], "dlib": {}, "agree": {}}
    cache = str(units_dir / "onnx")  # each graph exported once, kept across reruns
    for size in sizes:
        crops = tiled_crops(faces, size)
        for n in threads:
            torch.set_num_threads(n)  # also the torch side (tensors, decoding) of the onnx backend
            preds: dict = {}

            def pred_for(b: str, n: int = n, preds: dict = preds):
                if b not in preds:
                    preds[b] = release_predictor(backend=b, threads=n, onnx_cache=cache if b == "onnx" else None)
                return preds[b]

            for backend in ("torch", "onnx"):
                for face in (True, False):
                    cells = [f"{size} px", backend, "landmarks + face" if face else "landmarks only", str(n)]
                    for b in batches:
                        key = f"{size}/{backend}/{'face' if face else 'lm'}/t{n}/b{b}"
                        if key not in units:
                            pred = pred_for(backend)
                            pred.predict(crops[: 2 * b], batch_size=b, face=face)  # warm-up (and ORT session build)
                            t = run_time(lambda p=pred, b=b, f=face, c=crops: p.predict(c, b, f), repeat)
                            print(f"throughput {key}: {faces / t:.0f} faces/s", flush=True)
                            save(
                                key,
                                {
                                    "size": size,
                                    "backend": backend,
                                    "face": face,
                                    "threads": n,
                                    "batch": b,
                                    "faces_per_s": faces / t,
                                    "ms_per_face": t / faces * 1e3,
                                },
                            )
                        r = units[key]
                        cells.append(f"{r['faces_per_s']:.0f} ({r['ms_per_face']:.2f})")
                        doc["runs"].append(r)
                    rows.append(cells)
            key = f"agree/{size}px/t{n}"
            if key not in units:
                outs = {
                    (b, f): pred_for(b).predict(crops[:64], face=f) for b in ("torch", "onnx") for f in (True, False)
                }
                lm = max(
                    float(np.abs(a.landmarks - o.landmarks).max())
                    for f in (True, False)
                    for a, o in zip(outs["torch", f], outs["onnx", f], strict=True)
                )
                fd = max(
                    int(np.abs(np.asarray(a.face, dtype=int) - np.asarray(o.face, dtype=int)).max())
                    for a, o in zip(outs["torch", True], outs["onnx", True], strict=True)
                )
                save(key, {"landmarks_px": lm, "face_8bit_levels": fd})
            doc["agree"][f"{size}px/t{n}"] = units[key]

        def dlib_all(crops=crops, resize=True):
            for c in crops:
                im = c.resize((128, 128), Image.Resampling.BICUBIC) if resize else c
                teacher.points_in(np.ascontiguousarray(np.asarray(im)), rect)

        key = f"dlib/{size}px"
        if key not in units:
            torch.set_num_threads(1)
            dlib_all(crops[:16])
            t = run_time(dlib_all, repeat)
            big = [c.resize((128, 128), Image.Resampling.BICUBIC) for c in crops]
            t_sp = run_time(lambda big=big: dlib_all(big, resize=False), repeat)
            print(f"throughput {key}: {faces / t:.0f} faces/s", flush=True)
            save(key, {"faces_per_s": faces / t, "ms_per_face": t / faces * 1e3, "predictor_ms": t_sp / faces * 1e3})
        d = doc["dlib"][f"{size}px"] = units[key]
        rows.append(
            [f"{size} px", "dlib 68-point shape predictor (upsample to 128 px + predict)", "landmarks", "1"]
            + [f"{d['faces_per_s']:.0f} ({d['ms_per_face']:.2f})"]
            + ["- (one face at a time)"] * (len(batches) - 1)
        )
    head = ["crops", "backend", "output", "threads", *[f"batch {b}: faces/s (ms/face)" for b in batches]]
    return markdown_table(head, rows), doc


def throughput_block(table: str, doc: dict, cmd: str) -> str:
    """The RESULTS.md block: the table, the agreement of the backends and the best sht rate against dlib."""
    lines = [
        f"Release weights ({doc['weights']}), {doc['faces']} crops tiled from scikit-image's 100 LFW faces, medians "
        f"of {doc['repeat']} runs of `Predictor.predict` over all crops after a warm-up; CPU: "
        f"{platform.processor() or platform.machine()}, PyTorch {torch.__version__}, "
        f"load average {doc['load'][0]:.1f} before / {doc['load'][1]:.1f} after (1 min).",
        "",
        table,
        "",
    ]
    for size, d in doc["dlib"].items():
        for n in sorted({r["threads"] for r in doc["runs"]}):
            best = max(
                (r for r in doc["runs"] if f"{r['size']}px" == size and r["threads"] == n and not r["face"]),
                key=lambda r: r["faces_per_s"],
            )
            lines.append(
                f"- {size}, {n} thread(s): best sht landmarks-only {best['faces_per_s']:.0f} faces/s "
                f"({best['backend']}, batch {best['batch']}) vs dlib {d['faces_per_s']:.0f} faces/s on one thread "
                f"(its shape predictor alone {d['predictor_ms']:.2f} ms/face): "
                f"**{best['faces_per_s'] / d['faces_per_s']:.2f}x dlib**"
            )
    agree = ", ".join(
        f"{k}: {v['landmarks_px']:.1e} px, faces {v['face_8bit_levels']} level(s)" for k, v in doc["agree"].items()
    )
    n = min(64, doc["faces"])
    lines += ["", f"ONNX Runtime vs torch on {n} crops (max |difference|): {agree}.", "", f"Regenerate: `{cmd}`"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--results-dir", default=str(HERE / "results"), help="for speed-throughput-cpu.json")
    ap.add_argument("--only", choices=["all", "throughput"], default="all", help="throughput: that section alone")
    ap.add_argument("--faces", type=int, default=1000, help="throughput: crops per measurement")
    ap.add_argument("--sizes", type=int, nargs="+", default=[16, 64], help="throughput: crop sizes (px)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64], help="throughput: batch sizes")
    ap.add_argument("--thread-counts", type=int, nargs="+", default=[1, 2], help="throughput: CPU threads")
    ap.add_argument("--repeat", type=int, default=3, help="throughput: timed runs per measurement (median)")
    args = ap.parse_args()
    if args.only in ("all", "throughput"):
        load0 = os.getloadavg()[0]
        table, doc = section_throughput(
            args.faces, args.sizes, args.batches, args.thread_counts, args.repeat, HERE / "runs" / "speed-throughput"
        )
        doc["load"] = [load0, os.getloadavg()[0]]
        extra = [
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if k in ("faces", "sizes", "batches", "thread_counts", "repeat") and v != ap.get_default(k)
        ]
        cmd = " ".join(["python benchmarks/speed.py --only throughput", *extra])
        block = throughput_block(table, doc, cmd)
        update_block(args.results, "speed-throughput-cpu", block)
        out = Path(args.results_dir) / "speed-throughput-cpu.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**doc, "command": cmd}, indent=1))
        print(block)
        if args.only == "throughput":
            return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = Path(args.data)
    vgg = data / "vgg19" / "vgg19_block1_caffe_bgr.npz"
    if not vgg.exists():  # generated weights keep the timing meaningful without the real file
        from sht.models import VGG19Conv12

        rng = np.random.default_rng(0)
        vgg = Path("/tmp/sht-speed-vgg.npz")
        VGG19Conv12.from_arrays(
            rng.normal(0, 0.05, (64, 3, 3, 3)).astype(np.float32),
            np.zeros(64, np.float32),
            rng.normal(0, 0.02, (64, 64, 3, 3)).astype(np.float32),
            np.zeros(64, np.float32),
        ).save_npz(vgg)
    cpu = device.type == "cpu"
    presets = ["small", "paper", "paper-m"]
    t0 = time.time()
    peak = matmul_peak(device)
    sizes, d_sizes = section_sizes(presets, device)
    batches = {"small": [32, 128], "paper": [8] if cpu else [32, 128], "paper-m": [8] if cpu else [32, 128]}
    infer, d_inf = section_inference(presets, device, batches)
    train, d_train = section_training(device, str(vgg), ["small"] if cpu else ["small", "paper"])
    prof, d_prof = section_profile(device, 1)
    pipe, d_pipe = section_pipeline(data if data.is_dir() else None)
    opt, d_opt = section_optimisations(device)
    growth, d_growth = section_growth(device, HERE / "figures" / f"speed_growth_{device.type}.png")
    gf = d_sizes["paper/dhln"]["gflops"]
    b = batches["paper"][-1]
    achieved = gf * d_inf[f"paper/dhln/b{b}"]
    name = platform.processor() or platform.machine()
    if device.type == "cuda":
        name = torch.cuda.get_device_name()
    lines = [
        f"Device: {name} ({device.type}, {torch.get_num_threads()} CPU threads), PyTorch {torch.__version__}; "
        f"measured fp32 matmul peak {peak:.0f} GFLOP/s. Medians of repeated runs after warm-up; "
        f"the whole measurement took {(time.time() - t0) / 60:.0f} min.",
        "",
        "**Size** (FLOPs counted with `torch.utils.flop_counter`; one multiply-add = 2 FLOPs)",
        "",
        sizes,
        "",
        f"**Inference** ({'bf16 autocast, ' if device.type == 'cuda' else ''}inference mode, channels-last; batch A/B "
        f"= {batches['small']} for small, {batches['paper']} for the paper presets"
        f"{' (CPU: the paper presets are GPU presets)' if cpu else ''})",
        "",
        infer,
        "",
        f"Achieved: paper-preset DHLN at batch {b} does {gf:.1f} GFLOPs x {d_inf[f'paper/dhln/b{b}']:.1f} images/s = "
        f"**{achieved:.0f} GFLOP/s = {100 * achieved / peak:.0f}% of the measured matmul peak**.",
        "",
        f"**Where the time goes** (paper DHLN, batch 1; DHLN / SHN latency {d_inf['paper/ratio']:.2f}x)",
        "",
        prof,
        "",
        profile_note(d_prof, d_inf["paper/ratio"]),
        "",
        "**Training steps** (batch 16 = 8 pairs for the SHT steps)",
        "",
        train,
        "",
        "**Data pipeline** (the trainer builds batches in its own process from cached crops)",
        "",
        pipe,
        "",
        "**Optimisations, before -> after** (small preset unless stated; outputs compared)",
        "",
        opt,
        "",
        "**Cost growth**",
        "",
        growth,
        "",
        f"![cost growth](figures/speed_growth_{device.type}.png)",
        "",
        f"Regenerate: `python benchmarks/speed.py --device {device.type}`",
    ]
    block = "\n".join(lines)
    update_block(args.results, f"speed-{device.type}", block)
    (HERE / "runs").mkdir(exist_ok=True)
    (HERE / "runs" / f"speed_{device.type}.json").write_text(
        json.dumps(
            {
                "peak_gflops": peak,
                "sizes": d_sizes,
                "inference": d_inf,
                "training": d_train,
                "pipeline": d_pipe,
                "optimisations": d_opt,
                "growth": d_growth,
                "profile": d_prof,
            },
            indent=1,
            default=str,
        )
    )
    print(block)


if __name__ == "__main__":
    main()
