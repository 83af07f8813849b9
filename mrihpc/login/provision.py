"""What a stock image lacks, made on the login node: a wheelhouse of mrihpc's node-side
dependencies for the IMAGE's Python, in the shared cache (``<cache>/wheelhouse/<tag>-<hash>/``),
which the task's ``mrihpc.node.bootstrap`` installs from, offline, inside the image.

The requirements are this environment's own installed versions of mrihpc's dependency closure
(what the submitting environment was tested with), less torch and what only torch needs (the
image brings its own torch, and installing ours would replace it) and less the login-only
packages (the Visdom server's tornado, matplotlib for ``results --plot``). The wheels are
downloaded for the image's Python with pip (binary wheels for that Python and this machine's
architecture; a pure-Python sdist such as visdom's is built into a wheel here).

The image's Python version comes from ``container.python_version`` when the spec gives it, else
from the image itself, asked once at submit (``docker run --rm --network none IMAGE python -c
...``) through the same docker and daemon the tasks use, and remembered per image ID.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from mrihpc.data.cache import cache_root

#: login-node-only packages: the node never imports them
LOGIN_ONLY = {
    "tornado",
    "matplotlib",
    "contourpy",
    "cycler",
    "fonttools",
    "kiwisolver",
    "pyparsing",
}
#: the image's: never installed by us
IMAGE_OWNS = {"torch", "triton"}


class ProvisionError(RuntimeError):
    pass


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requires(dist: metadata.Distribution) -> list[str]:
    """Names of ``dist``'s unconditional requirements (no extras, markers true here)."""
    from packaging.requirements import Requirement

    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        out.append(_norm(req.name))
    return out


def _closure(names: list[str], skip: set[str]) -> dict[str, str]:
    """name -> installed version of ``names`` and everything they require, not crossing ``skip``."""
    found: dict[str, str] = {}
    todo = [n for n in names if n not in skip]
    while todo:
        name = todo.pop()
        if name in found or name in skip:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here
        found[name] = dist.version
        todo += _requires(dist)
    return found


def node_requirements() -> list[dict]:
    """Pinned ``[{name, version}]`` the node needs besides the image's torch."""
    ours = _requires(metadata.distribution("mrihpc"))
    torch_only = set(_closure(["torch"], set())) - set(
        _closure([n for n in ours if n != "torch"], IMAGE_OWNS)
    )
    skip = IMAGE_OWNS | torch_only | LOGIN_ONLY
    pinned = _closure([n for n in ours if n not in skip], skip)
    return [{"name": n, "version": v} for n, v in sorted(pinned.items())]


def _platforms() -> list[str]:
    arch = platform.machine()
    return [f"manylinux_2_{m}_{arch}" for m in (28, 27, 24, 17, 12, 5)] + [
        f"manylinux2014_{arch}",
        f"manylinux2010_{arch}",
        f"manylinux1_{arch}",
        f"linux_{arch}",
    ]


def wheelhouse(python_version: str, requirements: list[dict] | None = None) -> Path:
    """The wheelhouse for Python ``X.Y``, made once (under a lock) in the shared cache."""
    requirements = requirements if requirements is not None else node_requirements()
    tag = "cp" + python_version.replace(".", "")
    digest = hashlib.sha256(
        json.dumps([tag, platform.machine(), requirements]).encode()
    ).hexdigest()[:12]
    folder = cache_root() / "wheelhouse" / f"{tag}-{digest}"
    if (folder / "requirements.json").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (folder / "requirements.json").is_file():
            return folder
        folder.mkdir(exist_ok=True)
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
        specs = [f"{r['name']}=={r['version']}" for r in requirements]
        binary = [
            *pip,
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version",
            python_version,
            "--implementation",
            "cp",
            *[f"--platform={p}" for p in _platforms()],
            "-d",
            str(folder),
        ]
        if subprocess.run([*binary, *specs], capture_output=True, text=True).returncode:
            for spec in specs:  # one at a time, to find the ones without a binary wheel
                if subprocess.run([*binary, spec], capture_output=True, text=True).returncode == 0:
                    continue
                built = subprocess.run(
                    [*pip, "wheel", "--no-deps", "-w", str(folder), spec],
                    capture_output=True,
                    text=True,
                )
                if built.returncode or not _pure(folder, spec):
                    raise ProvisionError(
                        f"no wheel of {spec} for Python {python_version} ({platform.machine()}), "
                        "and its sdist does not build a pure-Python one: "
                        f"{built.stderr.strip()[-800:]}"
                    )
        (folder / "requirements.json").write_text(
            json.dumps({"python": python_version, "requirements": requirements}, indent=1)
        )
    return folder


def _pure(folder: Path, spec: str) -> bool:
    name = _norm(spec.split("==")[0]).replace("-", "_")
    return any(
        _norm(w.name.split("-")[0]).replace("-", "_") == name and w.name.endswith("-none-any.whl")
        for w in folder.glob("*.whl")
    )


def image_python(docker: list[str], image: str, python: str) -> str:
    """``X.Y`` of ``python`` in ``image``, asked through ``docker`` (the CLI words with --host),
    remembered per image ID in the cache."""
    inspect = subprocess.run(
        [*docker, "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        timeout=60,
    )
    image_id = inspect.stdout.strip() if inspect.returncode == 0 else None
    memo = cache_root() / "images.json"
    known = json.loads(memo.read_text()) if memo.is_file() else {}
    if image_id and image_id in known:
        return known[image_id]
    cmd = [
        *docker,
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "",
        image,
        *shlex.split(python),
        "-c",
        "import sys; print('%d.%d' % sys.version_info[:2])",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    version = (
        done.stdout.strip().splitlines()[-1] if done.returncode == 0 and done.stdout.strip() else ""
    )
    if not re.fullmatch(r"3\.\d+", version):
        raise ProvisionError(
            f"could not ask {image} for its Python version ({shlex.join(cmd)}: "
            f"{(done.stderr or done.stdout).strip()[-400:]}); set container.python_version"
        )
    if image_id:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({**known, image_id: version}, indent=1))
    return version


def file_sha256(path: Path) -> str:
    """sha256 of an image file (.sqsh, .sif: gigabytes), remembered in the cache by path, size and
    modification time, so a sweep's resubmits and later sweeps do not read it again."""
    stat = path.stat()
    key = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    memo = cache_root() / "image-files.json"
    known = json.loads(memo.read_text()) if memo.is_file() else {}
    if key not in known:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({**known, key: h.hexdigest()}, indent=1))
        known[key] = h.hexdigest()
    return known[key]
