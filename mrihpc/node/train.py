"""The Trainer every workload uses: epochs, AMP, schedule, DDP, evaluation, checkpoints, resume.

The task decides what a step and an evaluation are; the Trainer decides when they happen
and keeps everything needed to continue exactly: ``last.pt`` (every epoch) holds networks,
optimisers, schedules, the grad scaler, the epoch, the best metric and the RNG states.
Data order and training masks are functions of (seed, epoch, index), so a resumed run sees
exactly the batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mrihpc import workloads
from mrihpc.node import checkpoint
from mrihpc.node.distributed import World, all_gather, all_reduce_mean, barrier
from mrihpc.node.loading import EpochIndexed, ShuffledShard, VolumeShard, rank_loader
from mrihpc.node.optim import build_optimizer, build_schedule
from mrihpc.node.preemption import Interrupted, StopSignals
from mrihpc.node.datasets import check_declared
from mrihpc.node.task import BATCH_ROW, StepContext, Task, to_device
from mrihpc.spec import JobSpec


def use_sync_batchnorm(setting: Optional[bool], world: World, nets: dict[str, nn.Module]) -> bool:
    """Whether to convert batch norm to SyncBatchNorm. Default: with several ranks on GPUs and a
    BatchNorm in the model (a few samples per GPU make per-rank statistics noise). SyncBatchNorm
    needs GPUs, so asking for it on the CPU is an error that says so."""
    has_bn = any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) for n in nets.values() for m in n.modules()
    )
    if setting and world.device.type != "cuda":
        raise ValueError(
            "train.sync_batchnorm: true needs GPUs (SyncBatchNorm has no CPU kernel); "
            "set it to false"
        )
    wanted = setting if setting is not None else world.distributed and world.device.type == "cuda"
    return bool(wanted and has_bn and world.distributed)


class _Step:
    """The StepContext lent to ``Task.train_step``."""

    def __init__(self, trainer: "Trainer"):
        self.t = trainer

    def autocast(self):
        return self.t.autocast()

    def lr(self, optimizer: str = "main") -> float:
        return self.t.lr(optimizer)

    def step(self, loss: torch.Tensor, optimizer: str | Sequence[str] = "main") -> None:
        """One backward of ``loss``, then a step of each named optimiser (a CycleGAN's two
        generators share one loss whose gradients reach both)."""
        t = self.t
        names = [optimizer] if isinstance(optimizer, str) else list(optimizer)
        for name in names:
            t.optimizers[name].zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        for name in names:
            opt = t.optimizers[name]
            if t.spec.train.grad_clip:
                t.scaler.unscale_(opt)
                params = [p for g in opt.param_groups for p in g["params"]]
                torch.nn.utils.clip_grad_norm_(params, t.spec.train.grad_clip)
            t.scaler.step(opt)
            if t.spec.schedule_for(name).interval == "step":
                t.step_schedule(name)


class NonFiniteLoss(Exception):
    """The training loss became NaN or infinite; the message says where."""


class Trainer:
    def __init__(
        self,
        spec: JobSpec,
        task: Task,
        world: World,
        checkpoints: Path,
        monitors: Any,
        on_epoch: Optional[Callable] = None,
        signals: Optional[StopSignals] = None,
    ):
        """``signals``: the step's installed stop signals (the runner's); default, none come."""
        self.spec, self.task, self.world, self.dir, self.monitors = (
            spec,
            task,
            world,
            checkpoints,
            monitors,
        )
        self.on_epoch = on_epoch or (lambda record: None)
        self.signals = signals or StopSignals(spec.train.stop_check_every)
        self.stopping = False  # a stop signal agreed: checkpoint at this step boundary and leave
        train = spec.train
        if train.batch_size % world.size:
            raise ValueError(
                f"train.batch_size {train.batch_size} must be divisible by the {world.size} ranks"
            )
        torch.manual_seed(train.seed)  # identical initial weights on every rank
        self.train_set, self.val_set = task.datasets()
        self.workload = workloads.get(spec.task)
        self.declared = self.workload.datasets  # the protocols its sets follow
        check_declared(
            self.train_set,
            self.declared.train,
            f"the train set of task {spec.task}",
            self.declared.unused("train"),
        )
        self.nets = {k: v.to(world.device) for k, v in task.networks().items()}
        self.sampler = ShuffledShard(len(self.train_set), train.seed, world)
        rank_batch, pin = train.batch_size // world.size, world.device.type == "cuda"
        self.train_loader = rank_loader(
            self.train_set,
            self.sampler,
            rank_batch,
            True,
            train.workers,
            pin,
            train.seed,
            keyed=EpochIndexed(self.train_set),
        )
        self.val_loader = self._eval_loader(self.val_set, "val")
        self.also_scored = {
            name: self._eval_loader(data, name) for name, data in task.also_scored().items()
        }
        if len(self.train_loader) == 0:
            raise ValueError(
                f"no full batch: {len(self.train_set)} training samples over {world.size} ranks, "
                f"batch size {train.batch_size}"
            )
        self.steps_per_epoch = min(
            len(self.train_loader), train.steps_per_epoch or len(self.train_loader)
        )
        # before the optimisers are built, so they hold the converted modules' parameters
        if use_sync_batchnorm(train.sync_batchnorm, world, self.nets):
            self.nets = {
                k: nn.SyncBatchNorm.convert_sync_batchnorm(v) for k, v in self.nets.items()
            }
        self.optimizers, self.schedules = {}, {}
        for name, net_names in task.optimizers(list(self.nets)).items():
            params = [p for n in net_names for p in self.nets[n].parameters()]
            self.optimizers[name] = build_optimizer(spec.optim_for(name), params)
            self.schedules[name] = build_schedule(
                spec.schedule_for(name), self.optimizers[name], self.steps_per_epoch
            )
        if train.channels_last:
            self.nets = {k: v.to(memory_format=torch.channels_last) for k, v in self.nets.items()}
        if world.distributed:
            self.nets = {
                k: DistributedDataParallel(v) if any(p.requires_grad for p in v.parameters()) else v
                for k, v in self.nets.items()
            }
        if (
            train.compile
        ):  # last, around DDP, as torch recommends (DDP's buckets guide the graph breaks)
            self.nets = {k: torch.compile(v) for k, v in self.nets.items()}
        cuda = world.device.type == "cuda"
        self.amp_dtype = (
            {"bf16": torch.bfloat16, "fp16": torch.float16}.get(train.precision) if cuda else None
        )
        self.scaler = torch.amp.GradScaler(
            world.device.type, enabled=cuda and train.precision == "fp16"
        )
        self.epoch, self.step, self.best = 0, 0, None
        self.until = train.epochs  # where ``fit`` stops
        self.batch, self.epoch_losses = 0, []  # position inside the current epoch
        self.nonfinite = 0  # this rank's non-finite training losses in a row
        self.higher_is_better = self.workload.direction(train.metric) == "max"

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.world.device.type, dtype=self.amp_dtype)

    # ----------------------------------------------------------------- state
    def _raw(self, net: nn.Module) -> nn.Module:
        """The network itself, under torch.compile's and DDP's wrappers (what checkpoints hold)."""
        net = getattr(net, "_orig_mod", net)
        return net.module if isinstance(net, DistributedDataParallel) else net

    def state(self, rng_ranks: list) -> dict:
        """Everything ``resume`` needs; ``rng_ranks`` holds every rank's RNG states, in rank
        order."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            "best": self.best,
            "batch": self.batch,
            "epoch_losses": list(self.epoch_losses),
            "nets": {k: self._raw(v).state_dict() for k, v in self.nets.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "schedules": {k: v.state_dict() for k, v in self.schedules.items()},
            "scaler": self.scaler.state_dict(),
            "rng_ranks": rng_ranks,
        }

    def resume(self) -> bool:
        """Continue from last.pt when there is one; True if so."""
        state = checkpoint.load(
            self.dir / "last.pt"
        )  # on the CPU: load_state_dict moves tensors to the device
        if state is None:
            return False
        self._load_weights(state)
        for k, v in state["optimizers"].items():
            self.optimizers[k].load_state_dict(v)
        for k, v in state["schedules"].items():
            self.schedules[k].load_state_dict(v)
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step, self.best = state["epoch"], state["step"], state["best"]
        self.batch, self.epoch_losses = state.get("batch", 0), list(state.get("epoch_losses", []))
        ranks = state["rng_ranks"]
        # each rank continues its own streams (dropout, augmentation); a resume on another world
        # size has no state for the new ranks, which then take rank 0's
        checkpoint.set_rng_state(
            ranks[self.world.rank] if len(ranks) == self.world.size else ranks[0]
        )
        return True

    def weights_digest(self) -> str:
        """sha1 of every network's parameters and buffers: equal on every rank under DDP."""
        h = hashlib.sha1()
        for name in sorted(self.nets):
            for key, value in sorted(self._raw(self.nets[name]).state_dict().items()):
                h.update(key.encode())
                h.update(value.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def _save(self, name: str) -> None:
        """Collective: every rank hands rank 0 its RNG states, rank 0 writes."""
        rng_ranks = all_gather(checkpoint.rng_state(), self.world)
        if self.world.is_main:
            checkpoint.save(self.dir / name, self.state(rng_ranks))

    # ----------------------------------------------------------------- loop
    def fit(self, until: Optional[int] = None) -> dict:
        """Train to ``train.epochs``, or stop after epoch ``until`` (a successive-halving rung: the
        schedule stays the full run's, and the rung's last epoch is validated); returns the last
        epoch's record."""
        self.until = min(until or self.spec.train.epochs, self.spec.train.epochs)
        resumed = self.resume()
        if resumed and self.world.is_main:  # said in the log, so a restart from scratch would show
            print(
                f"[mrihpc] resumed from epoch {self.epoch} batch {self.batch} (step {self.step})",
                flush=True,
            )
        record: dict = {"kind": "epoch", "epoch": self.epoch - 1, "resumed": resumed}
        while self.epoch < self.until:
            record = self._epoch()
            self.epoch, self.batch, self.epoch_losses = self.epoch + 1, 0, []
            self._save("last.pt")
            barrier(self.world)
            self.on_epoch(record)
        # no report in flight: what follows (test scores, teardown) is collective
        self.signals.settle()
        return record

    def close(self) -> None:
        """Stop every loader's worker processes (a failed point must still exit)."""
        for loader in (self.train_loader, self.val_loader, *self.also_scored.values()):
            loader.close()

    def _epoch(self) -> dict:
        spec, epoch = self.spec, self.epoch
        self.task.ctx.epoch = epoch
        self.sampler.set_epoch(
            epoch
        )  # the dataset's set_epoch follows in whichever process reads it (EpochIndexed)
        for net in self.nets.values():
            net.train()
        losses, start = self.epoch_losses, time.time()
        self.sampler.skip = self.batch * self.train_loader.batch_size  # resuming inside this epoch
        for i, batch in enumerate(self.train_loader, start=self.batch):
            if i >= self.steps_per_epoch:
                break
            logged = self.run_step(self.device_batch(batch))
            self.batch = i + 1
            losses.append(logged["loss"])
            if (
                self.step % 10 == 0 or i == 0
            ):  # every rank reaches this step: the mean over ranks is logged
                logged = all_reduce_mean(logged, self.world)
            if self.world.is_main and (self.step % 10 == 0 or i == 0):
                self.monitors.log(
                    {
                        "kind": "step",
                        "epoch": epoch,
                        "batch": self.batch,
                        "batches": self.steps_per_epoch,
                        **logged,
                        "lr": self.lr(),
                    },
                    self.step,
                )
            if self.stopping:  # a signal: checkpoint here, at a step boundary, and leave
                self._save("last.pt")
                raise Interrupted(f"stopped at epoch {epoch} batch {self.batch}")
        self.sampler.skip = 0
        for name in self.schedules:
            if spec.schedule_for(name).interval == "epoch":
                self.step_schedule(name)
        mean = all_reduce_mean({"loss": sum(losses) / max(1, len(losses))}, self.world)["loss"]
        record = {
            "kind": "epoch",
            "epoch": epoch,
            "train_loss": float(mean),
            "lr": self.lr(),
            "epoch_time_s": round(time.time() - start, 3),
        }
        last = epoch + 1 in (spec.train.epochs, self.until)
        images = None
        if (epoch + 1) % spec.train.eval_every == 0 or last:
            scores, images = self._scores(self.val_loader, "val_", preview=True)
            for name, loader in self.also_scored.items():
                scores |= self._scores(loader, f"val_{name}_")[0]
            record.update(scores)
            self._keep_best(record)
        if self.world.is_main:
            if images is not None:
                self.monitors.log({"kind": "images", "epoch": epoch, "images": images}, self.step)
            self.monitors.log(record, self.step)
        return record

    def run_step(
        self, batch: dict, train_step: Optional[Callable[[dict, dict, StepContext], dict]] = None
    ) -> dict:
        """One training iteration on ``batch`` (already through ``device_batch``): the task's
        ``train_step`` (its optimisers step through the StepContext), then the grad scaler's
        update, once, after every optimiser of the iteration has stepped, then the agreement
        on non-finite losses and stop signals (``_agree``). Training, ``mrihpc profile`` and
        the benchmarks all step through here. ``train_step``: the task's own, or a wrapper of it
        (the line profiler). Returns the step's logged floats."""
        logged = (train_step or self.task.train_step)(
            batch, self.nets, _Step(self)
        )  # not kept: a cycle outlives its Trainer
        self.scaler.update()
        self.step += 1
        self._agree(logged["loss"])
        return logged

    def device_batch(self, batch: dict) -> dict:
        """A loader's batch on the training device, through the task's ``on_device``, with 4-D
        float tensors in channels_last when asked."""
        batch = self.task.on_device({k: to_device(v, self.world.device) for k, v in batch.items()})
        if self.spec.train.channels_last:
            batch = {
                k: v.contiguous(memory_format=torch.channels_last)
                if torch.is_tensor(v) and v.dim() == 4 and v.is_floating_point()
                else v
                for k, v in batch.items()
            }
        return batch

    def _agree(self, loss: float) -> None:
        """Count this rank's non-finite losses in a row and agree with the other ranks on it and
        on a stop signal, in the signals' pipelined all-reduce, so no step waits on a collective
        of its own (on GPUs each would drain the queue; on this CPU it was within noise). Past
        train.nonfinite_patience every rank fails the point at the same step, saying where; a signal
        sets ``stopping``."""
        self.nonfinite = self.nonfinite + 1 if not math.isfinite(loss) else 0
        self.stopping = self.signals.requested(self.world, self.nonfinite)
        agreed, patience = self.signals.nonfinite, self.spec.train.nonfinite_patience
        if agreed > patience:
            self.signals.settle()  # every rank is here, at this step: the report just started ends
            ranks = f" (the longest over {self.world.size} ranks)" if self.world.distributed else ""
            raise NonFiniteLoss(
                f"training loss {loss} at epoch {self.epoch} step {self.step} (batch "
                f"{self.batch + 1}); {agreed} non-finite in a row{ranks}, "
                f"train.nonfinite_patience is {patience}. Check the data for NaN / inf and the "
                "learning rate"
            )

    def step_schedule(self, name: str) -> None:
        """Advance optimiser ``name``'s schedule; at a decay_restarts restart, clear its state."""
        schedule = self.schedules[name]
        schedule.step()
        if getattr(schedule, "restarted", False) and self.spec.schedule_for(name).reset_optimizer:
            self.optimizers[
                name
            ].state.clear()  # as re-creating it: Adam's moments and step count restart

    def lr(self, optimizer: str = "main") -> float:
        opt = self.optimizers.get(optimizer) or next(iter(self.optimizers.values()))
        return float(opt.param_groups[0]["lr"])

    def _eval_loader(self, data, split: str):
        """``data``'s volumes dealt whole over the ranks, in the task's evaluation batches."""
        train = self.spec.train
        size = self.task.eval_batch_size(split) or max(1, train.batch_size // self.world.size)
        what = f"the {split} set of task {self.spec.task}"
        check_declared(data, self.declared.scored, what, self.declared.unused("scored"))
        volumes = data.volumes_index()
        return rank_loader(
            data,
            VolumeShard(volumes, self.world),
            size,
            False,
            train.workers,
            self.world.device.type == "cuda",
            train.seed,
        )

    @torch.no_grad()
    def _scores(
        self, loader, prefix: str, preview: bool = False
    ) -> tuple[dict[str, float], Optional[dict]]:
        """``loader``'s batches through ``Task.eval_step`` (in fp32: metrics never see bf16
        outputs), each key's outputs through ``Task.score``, gathered from every rank: the
        ``<prefix><metric>`` means (and ``_std`` where the workload reports the spread), and
        rank 0's preview of its first batch when ``preview``."""
        for net in self.nets.values():
            net.eval()
        parts: dict = {}
        rows: list[dict] = []
        images = None
        for i, batch in enumerate(loader):
            out = self.task.eval_step(
                self.device_batch(batch), self.nets, preview and i == 0 and self.world.is_main
            )
            for key, part in out.parts:
                parts.setdefault(key, []).append(part)
            rows += [r | {BATCH_ROW: True} for r in out.batch_rows]
            images = images if images is not None else out.preview
        mine = [self.task.score(key, p) for key, p in parts.items()] + rows
        volumes = [v for rank in all_gather(mine, self.world) for v in rank]
        keys = sorted({k for v in volumes for k in v} - {BATCH_ROW})
        out = {
            f"{prefix}{k}": float(
                sum(v[k] for v in volumes if k in v) / sum(1 for v in volumes if k in v)
            )
            for k in keys
        } | {f"{prefix}volumes": sum(1 for v in volumes if BATCH_ROW not in v)}
        for k in self.workload.report_std:  # the spread over cases, where reported
            values = torch.tensor(
                [v[k] for v in volumes if k in v and BATCH_ROW not in v], dtype=torch.float64
            )
            if len(values) > 1:
                out[f"{prefix}{k}_std"] = float(values.std())  # unbiased, as the seeds' torch.std
        return out, images

    def score_test(self) -> dict[str, float]:
        """Once training is over: the test split (``Task.test_dataset``) scored with last.pt
        (``test_last_*``) and best.pt (``test_*``, best on validation), logged as a ``test``
        record; the networks hold last.pt's weights again afterwards. {} without a test split."""
        test = self.task.test_dataset()
        if test is None:
            return {}
        loader = self._eval_loader(test, "test")
        out: dict[str, float] = {}
        try:
            for name, prefix in (("last.pt", "test_last_"), ("best.pt", "test_")):
                state = checkpoint.load(self.dir / name)
                if state is not None:  # no best.pt when no epoch was validated
                    self._load_weights(state)
                    out |= self._scores(loader, prefix)[0]
            self._load_weights(checkpoint.load(self.dir / "last.pt"))
        finally:
            loader.close()
        if self.world.is_main and out:
            self.monitors.log({"kind": "test", "epoch": self.epoch - 1, **out}, self.step)
        return out

    def _load_weights(self, state: Optional[dict]) -> None:
        for k, v in (state or {}).get("nets", {}).items():
            self._raw(self.nets[k]).load_state_dict(v)

    def _keep_best(self, record: dict) -> None:
        value = record.get(f"val_{self.spec.train.metric}")
        if value is None:
            return
        better = self.best is None or (
            value > self.best if self.higher_is_better else value < self.best
        )
        if better:
            self.best = value
            record["best"] = True
            self._save("best.pt")
