"""mrihpc: MRI deep-learning training from a YAML job spec to a Slurm array of GPU nodes.

The tree follows the flow of a job:

- ``login/``: what runs on the login node, without torch: the ``mrihpc`` command, submission
  (one submitit array per sweep, the container command), status, results, logs, and the
  Visdom server, follower and SSH tunnel.
- ``node/``: what runs on a compute node: the pickled entry point, the runner that records a
  point's outcome, the Trainer (AMP, DDP, schedule, checkpoints, preemption) and its monitors.
- ``workloads/``: one package per workload (its spec sections, data reader, task and prediction
  writer), registered in one line of ``workloads/__init__.py``.
- Shared by both sides, torch-free: the spec (``section``, ``spec``, ``spec_cluster``,
  ``specfile``, ``sweep``, ``seeding``, ``registry``), the run directory (``paths``), progress
  text and the Visdom transport and credentials the node and the follower both post with.
- Shared by the workloads, on the node: ``models/``, ``data/``, ``losses``, ``metrics``,
  ``msssim``, ``gan``.
"""

__version__ = "0.1.0"
