"""A wheel install works without a checkout: the configs and the release weights ship inside the package."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
import sys
from pathlib import Path
import sht
from sht.config import load_config, packaged_configs
from sht.cli import main
assert "site-packages" in sht.__file__ and "{root}" not in sht.__file__, sht.__file__
cfg = load_config("300w/small")
assert cfg.preset == "small" and cfg.data.val == ["300w:data/300W:val"], cfg.data.val
from sht.infer import release_weights
assert release_weights().is_file()
sys.exit(main(["configs"]))
"""


def test_wheel_installs_into_a_fresh_venv_with_its_configs(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(dist)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("sht-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packaged = sorted(n for n in names if n.startswith("sht/configs/") and n.endswith(".yaml"))
    in_tree = sorted((ROOT / "src" / "sht" / "configs").rglob("*.yaml"))
    assert len(packaged) == len(in_tree) >= 10
    assert "sht/weights/sht-small.safetensors" in names

    venv = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    site = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # the dependencies (torch, ...) are borrowed from this environment, appended after the fresh site-packages
    # (a path in a .pth file is not a site dir, so this environment's editable install of sht is not seen)
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    res = subprocess.run(
        [str(py), "-c", CHECK.replace("{root}", str(ROOT / "src"))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "300w/small" in res.stdout and "wflw/sht-m" in res.stdout
    cli = subprocess.run([str(venv / "bin" / "sht"), "configs"], capture_output=True, text=True, timeout=120)
    assert cli.returncode == 0 and "helen/small" in cli.stdout, cli.stderr[-2000:]
