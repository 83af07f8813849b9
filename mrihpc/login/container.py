"""How an array task enters its NVIDIA PyTorch image, expressed in submitit's own terms, so
arrays, logs and requeue work unchanged: submitit runs
``srun <srun_args> <python> -u -m submitit.core._submit <folder>`` and we choose
``srun_args`` and ``python``.

- none: the host's Python.
- pyxis: ``srun --container-image=... --container-mounts=... --container-workdir=...``;
  ``python`` is the image's. Slurm's environment and signals reach the task as usual.
- docker / apptainer: ``python`` is ``bash <run>/container.sh``, a script written into the run
  directory that ``exec``s ``docker run`` / ``apptainer exec`` with the image's python. For
  docker it passes Slurm's, submitit's and the rendezvous variables through an env file,
  runs ``--init`` (PID 1 forwards signals) with the CLI's signal proxying (the default for an
  attached run), so the USR2 / SIGTERM that srun delivers reach the Python process inside;
  the GPUs of the task (``CUDA_VISIBLE_DEVICES``) become ``--gpus device=...``; ``--ipc=host``
  (or ``--shm-size``) gives data loader workers their shared memory. Apptainer keeps the
  host's environment and forwards signals itself; ``--nv`` brings the GPUs.

The run directory, the task's data paths and the mrihpc cache are mounted at the same paths inside,
so every path in the run directory means the same thing on both sides.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from mrihpc import workloads
from mrihpc.data.cache import cache_root
from mrihpc.spec import JobSpec

ENTER_SCRIPT = "container.sh"
# variables that must reach the process inside: Slurm's, submitit's, the rendezvous, GPUs, and
# the CPU kernels' settings (the same point in and out of the image must compute the same thing)
PASS_THROUGH = (
    r"^(SLURM_|SUBMITIT_|MASTER_ADDR=|MASTER_PORT=|WORLD_SIZE=|RANK=|LOCAL_RANK=|CUDA_VISIBLE_DEVICES=|NCCL_"
    r"|OMP_NUM_THREADS=|ATEN_CPU_CAPABILITY=|ONEDNN_|MRIHPC_)"
)
# docker reference: [registry[:port]/]path[:tag][@digest], lower-case path components
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DOCKER_REF = re.compile(
    rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)
# pyxis also accepts enroot's "registry#image" form
PYXIS_REF = re.compile(
    rf"^(?:[a-zA-Z0-9.-]+(?::[0-9]+)?#)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def default_docker_host() -> str | None:
    """The per-user daemon socket of NVIDIA DGX sites, when it exists."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    sock = Path(f"/mnt/docker_socks/{user}/docker.sock")
    return f"unix://{sock}" if sock.exists() else None


def mounts(spec: JobSpec, run_root: Path) -> list[tuple[str, str, str]]:
    """(host, container, mode) bind mounts: the run directory, data, cache, then the spec's."""
    same = [str(run_root), str(cache_root())]
    for key in workloads.get(spec.task).data_paths:  # the task's data folders and files
        if getattr(spec.data, key, None):
            same.append(str(Path(getattr(spec.data, key)).expanduser().resolve()))
    return [(p, p, "rw") for p in dict.fromkeys(same)] + spec_mounts(spec)


def spec_mounts(spec: JobSpec) -> list[tuple[str, str, str]]:
    """container.mounts as (host, container, mode); ``host`` alone mounts it at its own path."""
    out = []
    for m in spec.container.mounts:
        parts = m.split(":")
        host, inside = parts[0], parts[1] if len(parts) > 1 else parts[0]
        out.append((str(Path(host).expanduser()), inside, parts[2] if len(parts) > 2 else "rw"))
    return out


def workdir(spec: JobSpec, run_root: Path) -> str:
    return spec.container.workdir or str(run_root)


def srun_args(spec: JobSpec, run_root: Path) -> list[str]:
    """Extra srun arguments of the runtime (pyxis only)."""
    c = spec.container
    if c.runtime != "pyxis":
        return []
    args = [
        f"--container-image={c.image}",
        "--container-mounts="
        + ",".join(
            f"{h}:{i}" + (":ro" if mode == "ro" else "") for h, i, mode in mounts(spec, run_root)
        ),
        f"--container-workdir={workdir(spec, run_root)}",
    ]
    if c.env:
        args.append("--container-env=" + ",".join(c.env))
    return args


def python_command(spec: JobSpec, run_root: Path) -> str | None:
    """submitit's ``python``: None (the host's) for none, the image's for pyxis, the enter
    script."""
    runtime = spec.container.runtime
    if runtime == "none":
        return None
    if runtime == "pyxis":  # submitit puts it into the srun line as it is: quote every word
        return " ".join(shlex.quote(w) for w in shlex.split(spec.container.python))
    return f"bash {shlex.quote(str(run_root / ENTER_SCRIPT))}"


def setup_lines(spec: JobSpec) -> list[str]:
    """sbatch lines before srun, for pyxis: the spec's variables (pyxis passes the job's
    environment in), and the requeue from the host. The image has no ``scontrol``: the process
    inside checkpoints and exits 140, srun returns that, and this batch shell, on the host,
    requeues the task when it exits."""
    if spec.container.runtime != "pyxis":
        return []
    lines = [f"export {k}={shlex.quote(str(v))}" for k, v in spec.container.env.items()]
    return lines + [
        "export MRIHPC_REQUEUE_BY=host",
        "mrihpc_after_srun() {",
        "  rc=$?",
        *(f"  {line}" for line in host_requeue(spec.train.max_requeues)),
        '  exit "$rc"',
        "}",
        "trap mrihpc_after_srun EXIT",
    ]


def host_requeue(max_requeues: int) -> list[str]:
    """Bash run on the host after the task's process exited with ``$rc``: 140 means it
    checkpointed after USR2 and asks to be requeued, which happens while Slurm's restart count
    is below train.max_requeues (on every runtime, as submitit counts it without a container)."""
    return [
        'if [[ $rc -eq 140 && "${SLURM_PROCID:-0}" == 0 && -n "${SLURM_JOB_ID:-}" ]]; then',
        '  task="${SLURM_ARRAY_JOB_ID:+${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}}"',
        f"  if (( ${{SLURM_RESTART_COUNT:-0}} < {int(max_requeues)} )); then",
        '    echo "[mrihpc] checkpointed after USR2: requeueing ${task:-$SLURM_JOB_ID}" >&2',
        '    scontrol requeue "${task:-$SLURM_JOB_ID}"',
        "  else",
        '    echo "[mrihpc] checkpointed after USR2; not requeued: train.max_requeues '
        f'({int(max_requeues)}) reached" >&2',
        "  fi",
        "fi",
    ]


def docker_words(spec: JobSpec, for_run: bool = False) -> list[str]:
    """The docker CLI as this spec calls it: the wrapper (docker form) or docker, with --host.
    ``for_run`` False: the words for ``image inspect`` / ``rm``, plain docker for a run-form
    wrapper."""
    d = spec.container.docker
    host = d.host or default_docker_host()
    if d.wrapper and (d.wrapper_kind == "docker" or for_run):
        return shlex.split(d.wrapper)
    return ["docker", *(["--host", host] if host else [])]


def _docker_lines(spec: JobSpec, run_root: Path, wheelhouse: str | None) -> list[str]:
    c, d, q = spec.container, spec.container.docker, shlex.quote
    run_form = bool(d.wrapper) and d.wrapper_kind == "run"
    host = d.host or default_docker_host()
    cli = [q(w) for w in docker_words(spec)]  # inspect and rm: plain docker for a run-form wrapper
    lines = [f"export {k}={q(str(v))}" for k, v in c.env.items()]
    # checked here, on the node, where they must exist (the login node may have neither); the
    # reason goes to the point's status.json, through the submitting Python (when the node sees it)
    tool = q(command_of(spec))
    record = f"{q(sys.executable)} -m mrihpc.node.unstarted {q(str(run_root))}"

    # ``why``: spec text, quoted as one shell word (never expanded), then the node's name
    def fail(why: str) -> str:
        return (
            f'{{ why={q(why)}" on $(hostname)"; echo "[mrihpc] FAILED: $why" >&2; '
            f'{record} "$why" 2>/dev/null || true; exit 127; }}'
        )

    lines += [f"command -v {tool} >/dev/null || " + fail(f"{command_of(spec)} is not on PATH")]
    if host and host.startswith("unix://"):
        sock = host[len("unix://") :]
        lines += [f"[[ -S {q(sock)} ]] || " + fail(f"no docker socket {sock}")]
    guard = "command -v docker >/dev/null && " if run_form else ""
    lines += [
        f"image_id=$({guard}{' '.join(cli)} image inspect --format '{{{{.Id}}}}' "
        f"{q(c.image)} 2>/dev/null || true)"
    ]
    # the variables that must reach python inside; with the task's GPUs renumbered from 0, as
    # the container sees only those. docker needs the PHYSICAL indices: Slurm's step / job
    # GPUs, not CUDA_VISIBLE_DEVICES, which is relative to the task's cgroup
    envs = [f"env | grep -E {q(PASS_THROUGH)} | grep -v '^CUDA_VISIBLE_DEVICES='"]
    gpu = []
    if spec.cluster.gpus_per_node and d.gpus:
        # srun --gpus-per-task=1 deals the step's GPUs to the node's tasks in order
        lines += [
            'IFS=, read -ra step_gpus <<<"${SLURM_STEP_GPUS:-${SLURM_JOB_GPUS:-}}"',
            "if (( ${#step_gpus[@]} > ${SLURM_LOCALID:-0} )); then "
            'visible="${step_gpus[${SLURM_LOCALID:-0}]}"; '
            'else visible="${CUDA_VISIBLE_DEVICES:-0}"; fi',
        ]
        envs.append(
            'echo "CUDA_VISIBLE_DEVICES=$(seq -s, 0 $(( $(tr -cd , <<<"$visible" | wc -c) )))"'
        )
        # a `docker run` wrapper is nvidia-docker's: it takes the GPUs from NVIDIA_VISIBLE_DEVICES
        gpu = (
            ['-e "NVIDIA_VISIBLE_DEVICES=$visible"']
            if run_form
            else ['--gpus "\\"device=$visible\\""']
        )
    shm = [f"--shm-size={d.shm_size}"] if d.shm_size else ["--ipc=host"]
    code = str(run_root / "code")
    cmd = [q(w) for w in docker_words(spec, for_run=True)] if run_form else [*cli, "run"]
    # HOME: under --user the image has no home for this uid; the mounted cache serves as one
    cmd += [
        "--rm",
        "--init",
        "--name",
        '"$name"',
        f"--network={d.network}",
        *shm,
        "--user",
        '"$(id -u):$(id -g)"',
        f"-e {q(f'HOME={cache_root()}')}",
        f"-e {q(f'MRIHPC_CODE={code}')}",
        f"-e {q(f'MRIHPC_IMAGE={c.image}')}",
        '-e "MRIHPC_IMAGE_ID=$image_id"',
        *([] if c.provision else [f"-e {q(f'PYTHONPATH={code}')}"]),
        "--env-file",
        "<(" + "; ".join(envs) + ")",
    ]
    cmd += [f"-v {q(f'{h}:{i}:{mode}')}" for h, i, mode in mounts(spec, run_root)]
    cmd += [f"-e {q(k)}" for k in c.env]
    cmd += [
        "-w",
        q(workdir(spec, run_root)),
        *gpu,
        q(c.image),
        *[q(w) for w in shlex.split(c.python)],
    ]
    if (
        c.provision
    ):  # the image's Python installs what it lacks, once per image, then becomes python "$@"
        cmd += [
            q(f"{code}/mrihpc/node/bootstrap.py"),
            q(wheelhouse or str(cache_root() / "wheelhouse" / "<made at submit>")),
            q(str(cache_root() / "sites")),
            "--",
        ]
    cmd.append('"$@"')
    # a name per task and attempt, removed when this script ends however it ends, so a
    # killed client never leaves a container running on the node
    lines.insert(
        0, 'name="mrihpc-${SLURM_JOB_ID:-$$}-${SLURM_PROCID:-0}-${SLURM_RESTART_COUNT:-0}"'
    )
    lines += [
        "removed=0",
        f"remove_container() {{ [[ $removed == 1 ]] || {{ {guard}{' '.join(cli)} rm -f "
        '"$name" >/dev/null 2>&1; } || true; removed=1; }',
        "trap remove_container EXIT",
    ]  # a function: a trap string would be parsed twice
    # removed as soon as it exits too: a requeue may kill this script before its EXIT trap
    return lines + _supervise(
        cmd,
        "docker's CLI proxies them (attached run) to --init, which hands them to python",
        spec.train.max_requeues,
        after_exit=["remove_container"],
    )


def enter_script(spec: JobSpec, run_root: Path, wheelhouse: str | None = None) -> str:
    """The bash script srun runs for docker / apptainer; its arguments go to the image's python.
    ``wheelhouse``: made at submit for the image's Python (a placeholder in a dry run)."""
    c = spec.container
    q = shlex.quote
    lines = [
        "#!/usr/bin/env bash",
        f"# written by mrihpc for {spec.name}: enter {c.image} with {c.runtime}, then run "
        "python there",
        "set -euo pipefail",
    ]
    if c.runtime == "docker":
        lines += _docker_lines(spec, run_root, wheelhouse)
    else:  # apptainer
        a = c.apptainer
        lines += [f"export {k}={q(str(v))}" for k, v in c.env.items()]
        cmd = [
            q(a.command),
            "exec",
            *(["--nv"] if a.nv else []),
            "--pwd",
            q(workdir(spec, run_root)),
        ]
        cmd += [f"--bind {q(f'{h}:{i}:{mode}')}" for h, i, mode in mounts(spec, run_root)]
        cmd += [q(c.image), q(c.python), '"$@"']
        lines += _supervise(
            cmd, "apptainer forwards them to the process inside", spec.train.max_requeues
        )
    return "\n".join(lines) + "\n"


def _supervise(
    cmd: list[str], how: str, max_requeues: int, after_exit: list[str] = ()
) -> list[str]:
    """Run the container in the background and hand srun's signals on; requeue from here.

    Images have no Slurm client, so submitit cannot ``scontrol requeue`` from inside: with
    MRIHPC_REQUEUE_BY=host the process inside checkpoints and exits 140 (128 + USR2), and
    this script, on the host, requeues the task (rank 0's script only)."""
    return [
        "export MRIHPC_REQUEUE_BY=host",
        " \\\n  ".join(_chunks(cmd)) + " &",
        "child=$!",
        f"# srun's USR2 (time limit) and SIGTERM (preemption, scancel): {how}",
        "trap 'kill -USR2 \"$child\" 2>/dev/null' USR2",
        "trap 'kill -TERM \"$child\" 2>/dev/null' TERM",
        "while :; do  # a trapped signal cuts wait short: wait again until the container "
        "has exited",
        '  rc=0; wait "$child" || rc=$?',
        '  kill -0 "$child" 2>/dev/null || break',
        "done",
        *after_exit,
        *host_requeue(max_requeues),
        'exit "$rc"',
    ]


def _chunks(words: list[str], width: int = 100) -> list[str]:
    """Words joined into lines of about ``width`` characters (a readable script)."""
    out, line = [], ""
    for w in words:
        if line and len(line) + len(w) > width:
            out.append(line)
            line = w
        else:
            line = f"{line} {w}" if line else w
    return out + [line]


def write_enter_script(spec: JobSpec, run_root: Path) -> dict | None:
    """Write ``container.sh``; for docker with provisioning, make the wheelhouse for the image's
    Python first. Returns the manifest's ``container`` record."""
    c = spec.container
    if c.runtime == "none":
        return None
    record: dict = {"runtime": c.runtime, "image": c.image}
    if c.image.endswith((".sqsh", ".sif")) and Path(c.image).expanduser().is_file():
        from mrihpc.login import provision

        record["image_id"] = "sha256:" + provision.file_sha256(Path(c.image).expanduser())
    if c.runtime == "pyxis":
        return record
    wheelhouse = None
    if c.runtime == "docker" and c.provision:
        from mrihpc.login import provision

        version = c.python_version or provision.image_python(
            docker_words(spec, for_run=False), c.image, c.python
        )
        wheelhouse = str(provision.wheelhouse(version))
        record.update(python_version=version, wheelhouse=wheelhouse)
    path = run_root / ENTER_SCRIPT
    path.write_text(enter_script(spec, run_root, wheelhouse))
    path.chmod(0o755)
    return record


def command_of(spec: JobSpec) -> str | None:
    """The executable a runtime needs on the nodes (None: nothing to check)."""
    c = spec.container
    if c.runtime == "docker":
        return shlex.split(c.docker.wrapper)[0] if c.docker.wrapper else "docker"
    if c.runtime == "apptainer":
        return c.apptainer.command
    if c.runtime == "pyxis":
        return "srun"
    return None


def check(spec: JobSpec, executor: str, check_paths: bool = True) -> list[str]:
    """Problems a submit must refuse (as ``container.<key>: why``)."""
    c = spec.container
    problems = []
    if c.runtime == "none":
        return problems
    if c.runtime == "docker" and not DOCKER_REF.match(c.image):
        problems.append(
            f"container.image: {c.image!r} is not a Docker image reference "
            "(e.g. nvcr.io/nvidia/pytorch:24.05-py3)"
        )
    if c.runtime == "pyxis" and not (
        c.image.endswith(".sqsh") or PYXIS_REF.match(c.image) or DOCKER_REF.match(c.image)
    ):
        problems.append(
            f"container.image: {c.image!r} is neither an image reference "
            "(nvcr.io#nvidia/pytorch:24.05-py3) nor an enroot .sqsh file"
        )
    if c.runtime == "apptainer" and not (
        c.image.endswith(".sif") or c.image.startswith(("docker://", "oras://", "library://"))
    ):
        problems.append(
            f"container.image: {c.image!r}: apptainer needs a .sif file or docker://, "
            "oras://, library:// URI"
        )
    if check_paths:
        for image in [c.image] if c.image.endswith((".sqsh", ".sif")) else []:
            if not Path(image).expanduser().is_file():
                problems.append(f"container.image: {image} does not exist on this host")
        for i, (host, _, _) in enumerate(spec_mounts(spec)):
            if not Path(host).exists():
                problems.append(f"container.mounts[{i}]: {host} does not exist on this host")
        tool = command_of(spec)
        # docker lives on the nodes: from a login node without it, Slurm points are still queued (a
        # warning, `warnings`) and the node checks again; the local executor runs it here
        if executor == "slurm" and c.runtime == "docker":
            pass
        elif executor in ("slurm", "local") and tool and not shutil.which(tool):
            problems.append(
                f"container.runtime: {c.runtime} needs `{tool}`, which is not on PATH here"
            )
        elif c.runtime == "pyxis" and executor == "slurm" and not _srun_has_pyxis():
            problems.append(
                "container.runtime: pyxis: this srun has no --container-image (the pyxis plugin is "
                "not loaded here); use docker or apptainer, or ask the admins for pyxis"
            )
    if spec.cluster.gpus_per_node:
        if c.runtime == "apptainer" and not c.apptainer.nv:
            problems.append(
                "container.apptainer.nv: false, but cluster.gpus_per_node is "
                f"{spec.cluster.gpus_per_node}: without --nv the GPUs do not reach the container"
            )
        if c.runtime == "docker" and c.docker.wrapper is None and c.docker.gpus is False:
            problems.append(
                "container.docker.gpus: false, but cluster.gpus_per_node is "
                f"{spec.cluster.gpus_per_node}"
            )
    return problems


def warnings(spec: JobSpec, executor: str) -> list[str]:
    """What a submit says but does not refuse."""
    c = spec.container
    if c.runtime == "docker" and executor == "slurm":
        tool = command_of(spec)
        host = c.docker.host or default_docker_host()
        if not shutil.which(tool):
            return [
                f"container.runtime: docker: `{tool}` is not on PATH on this login node; "
                "the points are queued "
                "and each node checks again (a point fails there with that reason)"
                + (
                    ""
                    if c.python_version or not c.provision
                    else "; set container.python_version, as the image cannot be asked for it "
                    "from here"
                )
            ]
        if host and host.startswith("unix://") and not Path(host[7:]).exists():
            return [
                f"container.docker.host: {host} does not exist on this login node; each "
                "node checks again"
            ]
    return []


def _srun_has_pyxis() -> bool:
    try:
        out = subprocess.run(["srun", "--help"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--container-image" in out.stdout
