"""First thing a task runs inside a stock image (an NGC PyTorch image has Python and torch, but no
mrihpc and not most of its dependencies), before anything of mrihpc can be imported; stdlib only,
run by path: ``<image python> <run>/code/mrihpc/node/bootstrap.py WHEELHOUSE SITES -- ARGS...``.

1. The distributions mrihpc needs on the node are listed in ``WHEELHOUSE/requirements.json``
   (pinned on the login node, which built the wheelhouse for this image's Python). Those the
   image LACKS are installed, offline (``pip --no-index --no-deps``), into one site folder per
   (image, requirements): ``SITES/<key>/``, the key hashing the image's Python, the image's own
   distributions and the requirements. Nothing the image has is replaced: torch above all, and a
   package the image brings at another version stays the image's (listed in ``site.json``).
2. The first task of an array installs under an exclusive lock on ``SITES/<key>.lock``; the
   others wait on the lock and find the folder ready (made in a temporary folder, then renamed).
3. Then this process becomes ``python ARGS...`` with PYTHONPATH = the run's snapshot and the site
   folder, so submitit, the snapshot's mrihpc and its dependencies import.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path


def image_distributions() -> dict[str, str]:
    """Normalised name -> version of every distribution the image's Python has."""
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            out.setdefault(normalise(name), dist.version)
    return out


def normalise(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def site_key(requirements: list[dict], have: dict[str, str]) -> str:
    blob = json.dumps(
        {
            "python": sys.version,
            "executable": sys.executable,
            "image": sorted(have.items()),
            "requirements": requirements,
        },
        sort_keys=True,
    )
    return (
        f"py{sys.version_info[0]}{sys.version_info[1]}-"
        + hashlib.sha256(blob.encode()).hexdigest()[:16]
    )


def provision(wheelhouse: Path, sites: Path) -> Path:
    """The site folder for this image and these requirements, made once under a lock."""
    requirements = json.loads((wheelhouse / "requirements.json").read_text())["requirements"]
    have = image_distributions()
    key = site_key(requirements, have)
    site = sites / key
    if (site / "site.json").is_file():
        return site  # the common case: no lock, no pip
    sites.mkdir(parents=True, exist_ok=True)
    with open(sites / f"{key}.lock", "a") as lock:
        started = time.time()
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other tasks of the array wait here
        if (site / "site.json").is_file():
            print(
                f"[mrihpc] site {site} made by another task (waited {time.time() - started:.1f} s)",
                file=sys.stderr,
            )
            return site
        missing = [r for r in requirements if normalise(r["name"]) not in have]
        kept = {
            r["name"]: {"image": have[normalise(r["name"])], "submitted": r["version"]}
            for r in requirements
            if normalise(r["name"]) in have and have[normalise(r["name"])] != r["version"]
        }
        tmp = sites / f".{key}.{os.getpid()}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if missing:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-deps",
                "--disable-pip-version-check",
                "--no-warn-script-location",
                "--find-links",
                str(wheelhouse),
                "--target",
                str(tmp),
                *[f"{r['name']}=={r['version']}" for r in missing],
            ]
            env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "PYTHONNOUSERSITE": "1"}
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode:
                shutil.rmtree(tmp, ignore_errors=True)
                raise SystemExit(
                    f"[mrihpc] could not install mrihpc's node dependencies into this image "
                    f"({sys.executable}, Python {sys.version.split()[0]}) from {wheelhouse}:\n"
                    f"{done.stderr.strip()[-3000:]}"
                )
        record = {
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "made": time.time(),
            "seconds": round(time.time() - started, 2),
            "installed": [f"{r['name']}=={r['version']}" for r in missing],
            "kept_from_image": kept,
            "wheelhouse": str(wheelhouse),
        }
        (tmp / "site.json").write_text(json.dumps(record, indent=1))
        os.replace(tmp, site)  # whole or not at all: a task killed mid-install leaves only a .tmp
        print(
            f"[mrihpc] installed {len(missing)} distribution(s) into {site} in {record['seconds']} "
            f"s (the image has {len(requirements) - len(missing)} of {len(requirements)})",
            file=sys.stderr,
        )
    return site


def main(argv: list[str]) -> None:
    if "--" not in argv or len(argv) < 3:
        raise SystemExit("usage: bootstrap.py WHEELHOUSE SITES -- PYTHON-ARGS...")
    split = argv.index("--")
    wheelhouse, sites = Path(argv[0]), Path(argv[1])
    site = provision(wheelhouse, sites)
    code = os.environ.get("MRIHPC_CODE") or str(Path(__file__).resolve().parents[2])
    # the snapshot first, then the site folder; the image's own site-packages stay after both
    os.environ["PYTHONPATH"] = os.pathsep.join([code, str(site)])
    os.environ["MRIHPC_SITE"] = str(site)
    os.execv(sys.executable, [sys.executable, *argv[split + 1 :]])


if __name__ == "__main__":
    main(sys.argv[1:])
