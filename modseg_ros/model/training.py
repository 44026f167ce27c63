"""Training: DELIVER-layout data, modality dropout, OHEM + LSCD / SGM, AdamW, warm-up + poly, DDP.

One function, ``train(TrainConfig)``, used by ``modseg train`` alone or under ``torchrun`` (DDP with
gloo on CPU, NCCL on GPU). Everything needed to resume sits in the output folder:

    <out>/state.safetensors + state.json   model and AdamW moments (fp32), step, config, history
    <out>/<name>.safetensors + <name>.json  the model checkpoint (what eval, export and the node load)
    <out>/<name>_step<k>.safetensors        the model at every checkpoint step (same-budget comparisons)
    <out>/log.jsonl                         one line per logged step
    <out>/curve.png                         loss (and validation mIoU) against steps

Re-running the same command resumes from ``state`` (``--resume``); the data order and the
augmentation draws are a pure function of (seed, sample number), so a resumed run continues the
same sequence.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, Dataset, Sampler

from modseg_ros.core.palette import IGNORE, NUM_CLASSES
from modseg_ros.core.types import MODALITIES
from modseg_ros.data.deliver import CONDITIONS, DeliverDataset
from modseg_ros.data.transforms import EvalTransform, TrainAugmentation
from modseg_ros.errors import CheckpointError, ConfigError
from modseg_ros.model.architectures import build
from modseg_ros.model.checkpoint import save_checkpoint
from modseg_ros.model.losses import lscd_loss, ohem_cross_entropy, random_teacher_split, sgm_loss
from modseg_ros.model.segmenter import ModalBatch, Segmenter, SegmenterConfig, labels_at, upsample

NUM_MODALITIES = len(MODALITIES)


@dataclass
class TrainConfig:
    data: str  # DELIVER-layout root
    out: str  # output folder
    arch: str = "any2seg"
    backbone: str = "b0"
    input_size: tuple[int, int] = (128, 256)
    split: str = "train"
    steps: int = 4000
    batch_size: int = 8  # per process
    lr: float = 6e-4  # from scratch (no ImageNet MiT weights here); DELIVER fine-tunes at 6e-5
    weight_decay: float = 0.01
    warmup_steps: int = 200
    modality_dropout: bool = True  # random non-empty subset per sample (AnySeg-style k ~ U{1..n})
    lscd_weight: float = 0.5  # Any2Seg: weight of each of the inter- and intra-modal terms
    sgm_weight: float = 1.0  # EQUISeg
    seed: int = 3407  # DELIVER's
    workers: int = 1
    threads: int = 0  # torch intra-op threads (0 = torch's default)
    log_every: int = 10
    checkpoint_every: int = 200
    val_data: str = ""  # optional DELIVER-layout root with a val split for the curve
    val_every: int = 500
    val_frames: int = 32
    name: str = ""  # checkpoint name; default <arch>_<backbone>
    resume: bool = True

    @property
    def checkpoint_name(self) -> str:
        return self.name or f"{self.arch}_{self.backbone}"

    def model_config(self) -> SegmenterConfig:
        return SegmenterConfig(arch=self.arch, backbone=self.backbone, input_size=tuple(self.input_size))


# --- data ------------------------------------------------------------------------------------------


class DrawSampler(Sampler[int]):
    """Endless draw numbers k for one process, from ``start_step`` on: k = (step·world + rank)·B + j."""

    def __init__(self, start_step: int, batch_size: int, rank: int, world: int) -> None:
        self.start_step, self.batch_size, self.rank, self.world = start_step, batch_size, rank, world

    def __iter__(self):
        step = self.start_step
        while True:
            base = (step * self.world + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)
            step += 1


class TrainingSet(Dataset):
    """Draw k -> (images (4, 3, h, w), available (4,), label (h, w), condition index).

    Frame = a per-epoch permutation (seeded) of the dataset, augmentation rng seeded by (seed, k).
    """

    def __init__(self, frames: DeliverDataset, size: tuple[int, int], seed: int) -> None:
        self.frames, self.augment, self.seed = frames, TrainAugmentation(tuple(size)), seed
        self._perm: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        return 1 << 62

    def frame_index(self, k: int) -> int:
        epoch, pos = divmod(k, len(self.frames))
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(len(self.frames)))
        return int(self._perm[1][pos])

    def __getitem__(self, k: int):
        frame = self.frames[self.frame_index(k)]
        rng = np.random.default_rng([self.seed, 1, k])
        inputs, label = self.augment(frame.encodings, frame.label, rng)
        h, w = label.shape
        images = np.zeros((NUM_MODALITIES, 3, h, w), dtype=np.float32)
        available = np.zeros(NUM_MODALITIES, dtype=bool)
        for i, m in enumerate(MODALITIES):
            if m in inputs:
                images[i], available[i] = inputs[m], True
        condition = CONDITIONS.index(frame.ref.condition) if frame.ref.condition in CONDITIONS else -1
        return torch.from_numpy(images), torch.from_numpy(available), torch.from_numpy(label.astype(np.int64)), condition


def modality_dropout(available: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(B, 4) available -> (4, B) present: k ~ U{1..n} of the n available, a uniform random subset."""
    b = available.shape[0]
    n = available.sum(dim=1)
    k = (torch.rand(b, generator=generator) * n).floor().long() + 1
    scores = torch.rand(available.shape, generator=generator).masked_fill(~available, 2.0)
    rank = scores.argsort(dim=1).argsort(dim=1)
    return ((rank < k[:, None]) & available).T.contiguous()


# --- optimisation -------------------------------------------------------------------------------


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on norms, biases and scalars (DELIVER's optimizer)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim <= 1 or "norm" in name or name.endswith("bias") or "temperature" in name
        (no_decay if plain else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_poly(step: int, total: int, warmup: int, warmup_ratio: float = 0.1, power: float = 0.9) -> float:
    """LR factor: linear warm-up from ``warmup_ratio`` then polynomial decay (DELIVER's WarmupPolyLR)."""
    if step < warmup:
        return warmup_ratio + (1.0 - warmup_ratio) * step / warmup
    return (1.0 - (step - warmup) / max(1, total - warmup)) ** power


# --- state -----------------------------------------------------------------------------------------


def _save_state(out: Path, model: Segmenter, optimizer: torch.optim.Optimizer, step: int, cfg: TrainConfig, history: dict) -> None:
    tensors = {f"model.{k}": v.detach().contiguous() for k, v in model.state_dict().items()}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{i}.{key}"] = torch.as_tensor(value).detach().contiguous()
    tmp = out / "state.safetensors.tmp"
    save_file(tensors, str(tmp))
    tmp.replace(out / "state.safetensors")
    doc = {"step": step, "config": asdict(cfg), "history": history}
    (out / "state.json.tmp").write_text(json.dumps(doc) + "\n")
    (out / "state.json.tmp").replace(out / "state.json")


def _load_state(out: Path, model: Segmenter, optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> tuple[int, dict]:
    doc = json.loads((out / "state.json").read_text())
    saved = doc["config"]
    for key in ("arch", "backbone", "input_size"):
        if list(np.atleast_1d(saved[key])) != list(np.atleast_1d(getattr(cfg, key))):
            raise ConfigError(f"{out}/state.json was trained with {key}={saved[key]!r}, not {getattr(cfg, key)!r}; use another --out")
    try:
        tensors = load_file(str(out / "state.safetensors"))
    except Exception as err:
        raise CheckpointError(f"cannot read training state {out}/state.safetensors: {err}") from err
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    opt_state = optimizer.state_dict()
    states: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, i, name = key.split(".", 2)
            states.setdefault(int(i), {})[name] = value
    opt_state["state"] = states
    optimizer.load_state_dict(opt_state)
    return int(doc["step"]), doc.get("history", {})


# --- validation -------------------------------------------------------------------------------------


@torch.no_grad()
def quick_validation(model: Segmenter, frames: DeliverDataset, count: int, size: tuple[int, int]) -> dict[str, float]:
    """mIoU of the full set and of each single modality on the first ``count`` frames (for the curve)."""
    from modseg_ros.core.metrics import ConfusionMatrix

    model.eval()
    transform = EvalTransform(tuple(size))
    subsets = {"full": tuple(range(NUM_MODALITIES))} | {m.letter: (i,) for i, m in enumerate(MODALITIES)}
    matrices = {name: ConfusionMatrix() for name in subsets}
    for idx in range(min(count, len(frames))):
        frame = frames[idx]
        inputs, label = transform(frame.encodings, frame.label)
        for name, slots in subsets.items():
            present = [s for s in slots if MODALITIES[s] in inputs]
            if not present:
                continue
            images = torch.stack([torch.from_numpy(inputs[MODALITIES[s]]) for s in present])[:, None]
            out = model(ModalBatch(images, torch.tensor(present)))
            pred = labels_at(out.logits, label.shape)[0].numpy()
            matrices[name].update(pred, label)
    model.train()
    return {name: m.miou() for name, m in matrices.items()}


def save_curve(out: Path, history: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps, losses = history.get("steps", []), history.get("loss", [])
    if steps:
        ax.plot(steps, losses, lw=0.8, label="train loss (total)")
        k = max(1, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1 :], smooth, lw=1.6, label=f"train loss (mean of {k})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if history.get("val_steps"):
        ax2 = ax.twinx()
        for name in history["val"][0]:
            ax2.plot(history["val_steps"], [v[name] for v in history["val"]], marker="o", ms=3, label=f"val mIoU {name}")
        ax2.set_ylabel("mIoU")
        ax2.legend(loc="upper right", fontsize=7)
    ax.legend(loc="upper left", fontsize=7)
    ax.set_title("training curve")
    fig.tight_layout()
    fig.savefig(out / "curve.png", dpi=110)
    plt.close(fig)


# --- the loop ------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    history: dict = field(default_factory=dict)


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _replica_checksum(model: torch.nn.Module) -> torch.Tensor:
    return torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()[None]


def train(cfg: TrainConfig, progress=None) -> TrainResult:
    """Train (or resume) and return the final checkpoint. ``progress(step, total, metrics)`` is called
    on rank 0 every ``log_every`` steps."""
    rank, world = _distributed()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = cfg.model_config()
    torch.manual_seed(cfg.seed)  # same initial weights on every rank
    model = build(model_cfg).train()
    optimizer = torch.optim.AdamW(parameter_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    start, history = 0, {"steps": [], "loss": [], "val_steps": [], "val": [], "seconds": 0.0}
    if cfg.resume and (out / "state.json").is_file():
        start, history = _load_state(out, model, optimizer, cfg)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", cfg.lr)
    frames = DeliverDataset(cfg.data, cfg.split)
    val_frames = DeliverDataset(cfg.val_data, "val") if cfg.val_data and rank == 0 else None
    teacher = None
    if model_cfg.arch == "any2seg" and cfg.lscd_weight > 0:
        from modseg_ros.model.teacher import TextTeacher

        teacher = TextTeacher.load()
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    loader = DataLoader(
        TrainingSet(frames, cfg.input_size, cfg.seed),
        batch_size=cfg.batch_size,
        sampler=DrawSampler(start, cfg.batch_size, rank, world),
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=2 if cfg.workers > 0 else None,
    )
    started = time.perf_counter()
    seconds_before = float(history.get("seconds", 0.0))
    step = start
    for images, available, labels, condition in loader:
        if step >= cfg.steps:
            break
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * world + rank)
        present = modality_dropout(available, gen) if cfg.modality_dropout else available.T.contiguous()
        batch = ModalBatch(images.transpose(0, 1), torch.arange(NUM_MODALITIES), present)
        factor = warmup_poly(step, cfg.steps, cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * factor
        output = net(batch)
        logits = upsample(output.logits, labels.shape[-2:])
        terms = {"ohem": ohem_cross_entropy(logits, labels)}
        if teacher is not None and output.embeddings is not None:
            conds = [CONDITIONS[c] if c >= 0 else "" for c in condition.tolist()]
            inter, intra = lscd_loss(output.embeddings, present, teacher.scene_embeddings(labels, conds))
            terms["lscd_inter"], terms["lscd_intra"] = cfg.lscd_weight * inter, cfg.lscd_weight * intra
        if model_cfg.arch == "equiseg" and cfg.sgm_weight > 0:
            teachers = random_teacher_split(present, gen)
            terms["sgm"] = cfg.sgm_weight * sgm_loss(output.stage_features, present, labels, NUM_CLASSES, teachers)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if rank == 0 and (step % cfg.log_every == 0 or step == cfg.steps):
            elapsed = seconds_before + time.perf_counter() - started
            metrics = {"step": step, "loss": loss.item(), **{k: v.item() for k, v in terms.items()},
                       "lr": cfg.lr * factor, "seconds": round(elapsed, 1),
                       "valid_pixels": int((labels != IGNORE).sum())}  # fmt: skip
            history["steps"].append(step)
            history["loss"].append(metrics["loss"])
            with open(out / "log.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if progress:
                progress(step, cfg.steps, metrics)
        if val_frames is not None and (step % cfg.val_every == 0 or step == cfg.steps):
            history["val_steps"].append(step)
            history["val"].append(quick_validation(model, val_frames, cfg.val_frames, cfg.input_size))
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            if world > 1:
                sums = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
                dist.all_gather(sums, _replica_checksum(model))
                if any(float(s) != float(sums[0]) for s in sums):
                    raise RuntimeError(f"DDP replicas diverged at step {step}: parameter checksums {[float(s) for s in sums]}")
                history["replicas_identical_at"] = step
            if rank == 0:
                history["seconds"] = seconds_before + time.perf_counter() - started
                _save_state(out, model, optimizer, step, cfg, history)
                save_curve(out, history)
                snapshot = {"data": str(cfg.data), "split": cfg.split, "frames": len(frames), "steps": step,
                            "seconds": round(history["seconds"], 1), "config": asdict(cfg)}  # fmt: skip
                save_checkpoint(model, out / f"{cfg.checkpoint_name}_step{step}.safetensors", name=cfg.checkpoint_name, training=snapshot)
    seconds = seconds_before + time.perf_counter() - started
    checkpoint = out / f"{cfg.checkpoint_name}.safetensors"
    if rank == 0:
        training = {"data": str(cfg.data), "split": cfg.split, "frames": len(frames), "steps": step, "world_size": world,
                    "seconds": round(seconds, 1), "config": asdict(cfg)}  # fmt: skip
        save_checkpoint(model.eval(), checkpoint, name=cfg.checkpoint_name, training=training)
    if world > 1:
        dist.barrier()
    return TrainResult(checkpoint, step, seconds, history)
