"""Visdom's page assets, installed from npm packages so the page renders on an air-gapped node.

Visdom serves its JavaScript, CSS, fonts and MathJax from ``<visdom package>/static`` and, on
its own, downloads them from CDNs on the first start (and exits when MathJax cannot be
fetched). The same files are published on the npm registry; ``install`` takes them from
``npm pack`` tarballs (fetched here, or from a folder carried over to an offline machine)
at the exact versions visdom's own ``build.py`` pins.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

# package@version -> {path inside the package: destination under static/}
FILES = {
    "jquery@3.1.1": {"dist/jquery.min.js": "js/jquery.min.js"},
    "bootstrap@3.3.7": {
        "dist/js/bootstrap.min.js": "js/bootstrap.min.js",
        "dist/css/bootstrap.min.css": "css/bootstrap.min.css",
        **{
            f"dist/fonts/{font}.{ext}": f"fonts/{font}.{ext}"
            for font in ["glyphicons-halflings-regular"]
            for ext in ("eot", "woff2", "woff", "ttf", "svg")
        },
    },
    "react@16.2.0": {"umd/react.production.min.js": "js/react-react.min.js"},
    "react-dom@16.2.0": {"umd/react-dom.production.min.js": "js/react-dom.min.js"},
    "react-modal@3.1.10": {"dist/react-modal.min.js": "js/react-modal.min.js"},
    "plotly.js-dist-min@2.11.1": {"plotly.min.js": "js/plotly-plotly.min.js"},
    "sjcl@1.0.7": {"sjcl.js": "js/sjcl.js"},
    "layout-bin-packer@1.4.0": {
        "dist/layout-bin-packer.js": "js/layout_bin_packer.js",
        "dist/layout-bin-packer.js.map": "js/layout-bin-packer.js.map",
    },
    "d3@3.5.17": {"d3.min.js": "js/d3.v3.min.js"},
    "d3-selection-multi@1.0.1": {"build/d3-selection-multi.js": "js/d3-selection-multi.v1.js"},
    "save-svg-as-png@1.4.17": {"lib/saveSvgAsPng.js": "js/saveSvgAsPng.js"},
    "react-resizable@1.4.6": {"css/styles.css": "css/react-resizable-styles.css"},
    "react-grid-layout@0.16.3": {"css/styles.css": "css/react-grid-layout-styles.css"},
    "classnames@2.2.5": {"index.js": "fonts/classnames"},
}
# MathJax: the combined configs, the packed jax and extensions, English, one web font
MATHJAX = "mathjax@2.7.5"
MATHJAX_DEST = "js/mathjax/2.7.5"
MATHJAX_PARTS = (
    "MathJax.js",
    "config/",
    "extensions/",
    "jax/",
    "localization/en/",
    "fonts/HTML-CSS/TeX/woff/",
)


def static_dir() -> Path:
    # found without importing visdom, whose __init__ imports torch (the login node must not)
    return Path(importlib.util.find_spec("visdom").submodule_search_locations[0]) / "static"


def expected() -> list[Path]:
    """Every file the page needs (MathJax by its entry point and combined config)."""
    files = [static_dir() / dest for table in FILES.values() for dest in table.values()]
    return files + [
        static_dir() / MATHJAX_DEST / "MathJax.js",
        static_dir() / MATHJAX_DEST / "config" / "TeX-AMS-MML_HTMLorMML.js",
    ]


def missing() -> list[Path]:
    return [p for p in expected() if not p.is_file()]


def _tarball(package: str, folder: Path) -> Path:
    name, version = package.rsplit("@", 1)
    found = sorted(folder.glob(f"{name.replace('/', '-')}-{version}.tgz"))
    if found:
        return found[0]
    if not shutil.which("npm"):
        raise RuntimeError(f"{package}: no {name}-{version}.tgz in {folder} and no npm to fetch it")
    subprocess.run(
        ["npm", "pack", "--silent", package, "--pack-destination", str(folder)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return _tarball(package, folder)


def _extract(tgz: Path, wanted, static: Path) -> int:
    """Copy members of an npm tarball (paths under ``package/``);
    ``wanted(path) -> dest or None``."""
    copied = 0
    with tarfile.open(tgz) as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            dest = wanted(member.name.split("/", 1)[1])
            if dest is None:
                continue
            target = static / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out)
            copied += 1
    return copied


def install(tarballs: Path | None = None) -> int:
    """Install every asset into visdom's static folder; returns the number of files copied.

    ``tarballs``: a folder of ``npm pack`` tarballs; missing ones are fetched with npm into it
    (a temporary folder when None). Marks the build as done so visdom does not download.
    """
    static = static_dir()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tarballs) if tarballs else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        copied = 0
        for package, table in FILES.items():
            copied += _extract(_tarball(package, folder), table.get, static)
        mathjax = lambda p: f"{MATHJAX_DEST}/{p}" if p.startswith(MATHJAX_PARTS) else None  # noqa: E731
        copied += _extract(_tarball(MATHJAX, folder), mathjax, static)
    (static / "version.built").write_text(importlib.metadata.version("visdom"))
    if missing():
        raise RuntimeError(f"assets still missing after install: {', '.join(map(str, missing()))}")
    return copied
