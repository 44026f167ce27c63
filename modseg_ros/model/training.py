"""Training: DELIVER-layout data mixed with real labelled camera data, modality dropout, OHEM + LSCD /
SGM, AdamW, warm-up + poly, DDP.

The world's frames carry all four modalities; a real labelled dataset (data/labelled.py, e.g.
CamVid) carries the camera alone. ``real_ratio`` of the draws come from the real sets, so one run
teaches every modality on the world and the camera on real images; modality dropout already trains
the network to work with whatever subset a frame has.

One function, ``train(TrainConfig)``, used by ``modseg train`` alone or under ``torchrun`` (DDP with
gloo on CPU, NCCL on GPU; on several GPUs each process takes ``cuda:<LOCAL_RANK>``, on several
machines the standard ``torchrun --nnodes N --node-rank R --rdzv-backend c10d --rdzv-endpoint
HOST:PORT`` launch). On CUDA the forward and the losses run under automatic mixed precision (fp16
with a gradient scaler); the weights and AdamW moments stay fp32. Everything needed to resume sits in
the output folder:

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
from modseg_ros.data.labelled import LabelledDataset
from modseg_ros.data.transforms import EvalTransform, TrainAugmentation
from modseg_ros.errors import CheckpointError, ConfigError
from modseg_ros.model.architectures import build
from modseg_ros.model.checkpoint import load_checkpoint, save_checkpoint
from modseg_ros.model.device import default_device, parse_device, torch_device
from modseg_ros.model.losses import lscd_loss, ohem_cross_entropy, random_teacher_split, sgm_loss
from modseg_ros.model.labels import labels_at
from modseg_ros.model.segmenter import ModalBatch, Segmenter, segment_camera, upsample
from modseg_ros.model.sidecar import SegmenterConfig

NUM_MODALITIES = len(MODALITIES)
# How the loss weighs classes: "none" (every labelled pixel alike) or "enet": w = 1 / ln(1.02 + p),
# p the class's share of the pixels the draws see (ENet's weighting; thin classes such as poles, signs
# and cyclists otherwise hardly move the loss), scaled so that the mean weight per pixel is 1.
CLASS_WEIGHTING = ("none", "enet")
ENET_C = 1.02
WEIGHTING_FRAMES = 200  # label maps per source the class shares are measured on


@dataclass
class TrainConfig:
    data: str  # DELIVER-layout root ("" = real data only)
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
    real: tuple[str, ...] = ()  # labelled camera datasets as "<mapping>=<root>" (data/labelled.py)
    real_ratio: float = 0.5  # share of draws from the real datasets (when there is world data too)
    real_val_frames: int = 0  # frames of each real dataset's val split for the curve (0 = none)
    init: str = ""  # checkpoint whose weights a new run starts from (fine-tuning)
    lidar_intensity: str = "raw"  # core/network_input.py LIDAR_INTENSITY; recorded in the checkpoint
    narrow_lidar_p: float = 0.0  # chance of cutting a LiDAR image to a narrower field of view
    device: str = ""  # cpu | cuda | cuda:N ("" = cuda where torch sees a GPU, else cpu)
    class_weighting: str = "none"  # none | enet: CLASS_WEIGHTING

    def __post_init__(self) -> None:
        if not self.data and not self.real:
            raise ConfigError("training needs data: a DELIVER-layout root, --real datasets, or both")
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ConfigError(f"real_ratio must be within [0, 1], got {self.real_ratio}")
        for spec in self.real:
            real_spec(spec)
        if self.device:
            parse_device(self.device)
        if self.class_weighting not in CLASS_WEIGHTING:
            raise ConfigError(f"class_weighting must be one of {', '.join(CLASS_WEIGHTING)}, got '{self.class_weighting}'")

    @property
    def checkpoint_name(self) -> str:
        return self.name or f"{self.arch}_{self.backbone}"

    def model_config(self) -> SegmenterConfig:
        return SegmenterConfig(arch=self.arch, backbone=self.backbone, input_size=tuple(self.input_size))


# --- data ------------------------------------------------------------------------------------------


def real_spec(spec: str) -> tuple[str, str]:
    """"<mapping>=<root>" -> (mapping name or YAML path, dataset root)."""
    mapping, sep, root = spec.partition("=")
    if not sep or not mapping or not root:
        raise ConfigError(f"real dataset '{spec}' must be <mapping>=<root>, e.g. camvid=path/to/CamVid")
    return mapping, root


def describe_sources(sources: list) -> list[dict]:
    """What a run trained on, without where it lay on the machine: name, split, frames, fingerprint."""
    described = []
    for frames in sources:
        if isinstance(frames, LabelledDataset):
            described.append({"dataset": frames.mapping.name, "split": frames.split, "frames": len(frames),
                              "fingerprint": frames.fingerprint()})  # fmt: skip
        else:
            world = frames.root / "world.yaml"
            described.append({"dataset": "embedded world" if world.is_file() else "DELIVER layout", "split": frames.split,
                              "frames": len(frames), "fingerprint": frames.fingerprint()})  # fmt: skip
    return described


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

    The source of draw k is real with probability ``real_ratio`` (seeded by (seed, 2, k)); the frame
    is the source's per-epoch permutation (seeded) at k, the augmentation rng seeded by (seed, 1, k).
    """

    def __init__(self, world: DeliverDataset | None, real: list[LabelledDataset], real_ratio: float,
                 augment: TrainAugmentation, seed: int) -> None:  # fmt: skip
        self.world, self.real, self.augment, self.seed = world, real, augment, seed
        self.real_ratio = real_ratio if world is not None and real else (1.0 if real else 0.0)
        self._perms: dict[int, tuple[int, np.ndarray]] = {}

    def __len__(self) -> int:
        return 1 << 62

    def source_of(self, k: int) -> int:
        """-1 for the world, else the index of the real dataset."""
        rng = np.random.default_rng([self.seed, 2, k])
        if rng.random() >= self.real_ratio:
            return -1
        return int(rng.integers(len(self.real)))

    def frame_index(self, source: int, k: int) -> int:
        frames = self.world if source < 0 else self.real[source]
        epoch, pos = divmod(k, len(frames))
        cached = self._perms.get(source)
        if cached is None or cached[0] != epoch:
            cached = self._perms[source] = (epoch, np.random.default_rng([self.seed, epoch, source + 1]).permutation(len(frames)))
        return int(cached[1][pos])

    def __getitem__(self, k: int):
        source = self.source_of(k)
        frame = (self.world if source < 0 else self.real[source])[self.frame_index(source, k)]
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


def class_shares(world: DeliverDataset | None, real: list[LabelledDataset], real_ratio: float,
                 frames: int = WEIGHTING_FRAMES) -> np.ndarray:  # fmt: skip
    """(NUM_CLASSES,) share of the labelled pixels per DELIVER class in the draws of ``TrainingSet``:
    each source's share over up to ``frames`` label maps spread over it, mixed by the draws' real
    ratio (``TrainingSet.real_ratio``: 0 without real sets, 1 without the world)."""
    sources = ([(world, 1.0 - real_ratio)] if world is not None else []) + [(r, real_ratio / len(real)) for r in real]
    shares = np.zeros(NUM_CLASSES)
    for dataset, draw_share in sources:
        counts = np.zeros(NUM_CLASSES)
        for index in np.linspace(0, len(dataset) - 1, min(frames, len(dataset))).astype(int):
            counts += np.bincount(dataset.label(int(index)).ravel(), minlength=256)[:NUM_CLASSES]
        if counts.sum():
            shares += draw_share * counts / counts.sum()
    return shares


def enet_class_weights(shares: np.ndarray) -> np.ndarray:
    """ENet's 1 / ln(c + p), scaled so that the expected weight of a labelled pixel is 1."""
    weights = 1.0 / np.log(ENET_C + shares)
    return weights / float((shares * weights).sum() or 1.0)


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
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for i, state in optimizer.state_dict()["state"].items():
        for key, value in state.items():
            tensors[f"optim.{i}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
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
def quick_validation(model: Segmenter, frames: DeliverDataset, count: int, size: tuple[int, int],
                     lidar_intensity: str = "raw") -> dict[str, float]:  # fmt: skip
    """mIoU of the full set and of each single modality on the first ``count`` frames (for the curve)."""
    from modseg_ros.core.metrics import ConfusionMatrix

    model.eval()
    transform = EvalTransform(tuple(size), lidar_intensity)
    subsets = {"full": tuple(range(NUM_MODALITIES))} | {m.letter: (i,) for i, m in enumerate(MODALITIES)}
    matrices = {name: ConfusionMatrix() for name in subsets}
    for idx in range(min(count, len(frames))):
        frame = frames[idx]
        inputs, label = transform(frame.encodings, frame.label)
        for name, slots in subsets.items():
            present = [s for s in slots if MODALITIES[s] in inputs]
            if not present:
                continue
            device = next(model.parameters()).device
            images = torch.stack([torch.from_numpy(inputs[MODALITIES[s]]) for s in present])[:, None].to(device)
            out = model(ModalBatch(images, torch.tensor(present, device=device)))
            pred = labels_at(out.logits.float().cpu().numpy(), label.shape)[0]
            matrices[name].update(pred, label)
    model.train()
    return {name: m.miou() for name, m in matrices.items()}


@torch.no_grad()
def real_validation(model: Segmenter, frames: LabelledDataset, count: int, pixels: int) -> float:
    """Camera-only mIoU over the dataset's own classes on ``count`` val frames spread over the split."""
    from modseg_ros.core.metrics import ConfusionMatrix

    model.eval()
    lut = frames.mapping.prediction_lut()
    matrix = ConfusionMatrix(len(frames.mapping.classes) + 1)
    for idx in np.linspace(0, len(frames) - 1, min(count, len(frames))).astype(int):
        rgb, label = frames.dataset_frame(int(idx))
        matrix.update(lut[segment_camera(model, rgb, pixels)], label)
    model.train()
    return round(float(matrix.iou()[:-1].mean()), 2)


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


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """AdamW moments restored from a state file live on the CPU; put them beside their parameters."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                state[key] = value.to(device)


def training_record(cfg: TrainConfig, sources: list, step: int, world: int, seconds: float) -> dict:
    """The sidecar's training block: the data by name, split and fingerprint, the settings that
    shaped the weights; no paths of the machine it ran on."""
    settings = {k: v for k, v in asdict(cfg).items() if k not in ("data", "out", "val_data", "real", "init", "resume")}
    return {"data": describe_sources(sources), "steps": step, "world_size": world, "seconds": round(seconds, 1),
            "initialised_from": Path(cfg.init).name if cfg.init else "", "config": settings}  # fmt: skip


def _distributed(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, this process's device). Under torchrun a CUDA run takes the GPU of its local
    rank and NCCL; a CPU run takes gloo. The device is checked before the process group starts."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    kind, _ = parse_device(device_name)
    if kind == "cuda" and world > 1:
        device = torch_device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        torch.cuda.set_device(device)
    else:
        device = torch_device(device_name)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ((dist.get_rank(), world) if world > 1 else (0, 1)) + (device,)


def _replica_checksum(model: torch.nn.Module) -> torch.Tensor:
    return torch.stack([p.detach().double().sum() for p in model.parameters()]).sum()[None]


def train(cfg: TrainConfig, progress=None) -> TrainResult:
    """Train (or resume) and return the final checkpoint. ``progress(step, total, metrics)`` is called
    on rank 0 every ``log_every`` steps."""
    rank, world, device = _distributed(cfg.device or default_device())
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
    elif cfg.init:
        initial, _ = load_checkpoint(cfg.init)
        if initial.config.arch != model_cfg.arch or initial.config.backbone != model_cfg.backbone:
            raise ConfigError(f"--init {cfg.init} is {initial.config.arch}/{initial.config.backbone}, not {model_cfg.arch}/{model_cfg.backbone}")
        model.load_state_dict(initial.state_dict())
    model.to(device)
    _move_optimizer_state(optimizer, device)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", cfg.lr)
    world_frames = DeliverDataset(cfg.data, cfg.split) if cfg.data else None
    real_frames = [LabelledDataset(root, mapping, "train") for mapping, root in map(real_spec, cfg.real)]
    sources = ([world_frames] if world_frames is not None else []) + real_frames
    val_frames = DeliverDataset(cfg.val_data, "val") if cfg.val_data and rank == 0 else None
    real_val = [LabelledDataset(root, mapping, "val") for mapping, root in map(real_spec, cfg.real)] if cfg.real_val_frames and rank == 0 else []
    augment = TrainAugmentation(tuple(cfg.input_size), real_camera=bool(real_frames), narrow_lidar_p=cfg.narrow_lidar_p,
                                lidar_intensity=cfg.lidar_intensity)  # fmt: skip
    teacher = None
    if model_cfg.arch == "any2seg" and cfg.lscd_weight > 0:
        from modseg_ros.model.teacher import TextTeacher

        teacher = TextTeacher.load()
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                                        find_unused_parameters=True)  # fmt: skip
    amp = device.type == "cuda"  # fp16 autocast + loss scaling on the GPU; fp32 on the CPU
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    training_set = TrainingSet(world_frames, real_frames, cfg.real_ratio, augment, cfg.seed)
    class_weights = None
    if cfg.class_weighting == "enet":
        class_weights = torch.tensor(enet_class_weights(class_shares(world_frames, real_frames, training_set.real_ratio)),
                                     dtype=torch.float32, device=device)  # fmt: skip
        history["class_weights"] = [round(float(w), 4) for w in class_weights]
    loader = DataLoader(
        training_set,
        batch_size=cfg.batch_size,
        sampler=DrawSampler(start, cfg.batch_size, rank, world),
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        prefetch_factor=2 if cfg.workers > 0 else None,
        pin_memory=device.type == "cuda",
    )
    started = time.perf_counter()
    seconds_before = float(history.get("seconds", 0.0))
    step = start
    for images, available, labels, condition in loader:
        if step >= cfg.steps:
            break
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * world + rank)
        present = modality_dropout(available, gen) if cfg.modality_dropout else available.T.contiguous()
        images, labels, present = (t.to(device, non_blocking=True) for t in (images, labels, present))
        batch = ModalBatch(images.transpose(0, 1), torch.arange(NUM_MODALITIES, device=device), present)
        factor = warmup_poly(step, cfg.steps, cfg.warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * factor
        with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            output = net(batch)
            logits = upsample(output.logits, labels.shape[-2:])
        terms = {"ohem": ohem_cross_entropy(logits.float(), labels, class_weights=class_weights)}
        if teacher is not None and output.embeddings is not None:
            conds = [CONDITIONS[c] if c >= 0 else "" for c in condition.tolist()]
            inter, intra = lscd_loss(output.embeddings, present, teacher.scene_embeddings(labels, conds))
            terms["lscd_inter"], terms["lscd_intra"] = cfg.lscd_weight * inter, cfg.lscd_weight * intra
        if model_cfg.arch == "equiseg" and cfg.sgm_weight > 0:
            teachers = random_teacher_split(present, gen)
            terms["sgm"] = cfg.sgm_weight * sgm_loss(output.stage_features, present, labels, NUM_CLASSES, teachers)
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
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
        if (val_frames is not None or real_val) and (step % cfg.val_every == 0 or step == cfg.steps):
            history["val_steps"].append(step)
            scores = quick_validation(model, val_frames, cfg.val_frames, cfg.input_size, cfg.lidar_intensity) if val_frames else {}
            for frames in real_val:
                scores[frames.mapping.name] = real_validation(model, frames, cfg.real_val_frames, cfg.input_size[0] * cfg.input_size[1])
            history["val"].append(scores)
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            if world > 1:
                sums = [torch.zeros(1, dtype=torch.float64, device=device) for _ in range(world)]
                dist.all_gather(sums, _replica_checksum(model))
                if any(float(s) != float(sums[0]) for s in sums):
                    raise RuntimeError(f"DDP replicas diverged at step {step}: parameter checksums {[float(s) for s in sums]}")
                history["replicas_identical_at"] = step
            if rank == 0:
                history["seconds"] = seconds_before + time.perf_counter() - started
                _save_state(out, model, optimizer, step, cfg, history)
                save_curve(out, history)
                snapshot = training_record(cfg, sources, step, world, history["seconds"])
                save_checkpoint(model, out / f"{cfg.checkpoint_name}_step{step}.safetensors", name=cfg.checkpoint_name,
                                training=snapshot, lidar_intensity=cfg.lidar_intensity)  # fmt: skip
    seconds = seconds_before + time.perf_counter() - started
    checkpoint = out / f"{cfg.checkpoint_name}.safetensors"
    if rank == 0:
        save_checkpoint(model.eval(), checkpoint, name=cfg.checkpoint_name, training=training_record(cfg, sources, step, world, seconds),
                        lidar_intensity=cfg.lidar_intensity)  # fmt: skip
    if world > 1:
        dist.barrier()
    return TrainResult(checkpoint, step, seconds, history)
