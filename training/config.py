"""Training configuration: YAML validated by pydantic (configs/train/*.yaml).

Relative paths (checkpoint_dir, data.path, registry.root) are taken from the working directory,
as everywhere in preread (the CLI runs from the repository root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from models.cxr.network import CXR_ARCHITECTURES
from models.ecg.factory import ECG_ARCHITECTURES
from models.registry import registry_kind


class TrainConfigError(ValueError):
    """A training config file that cannot be read or does not validate; the message lists each problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelSection(_Section):
    architecture: str = Field(
        "xresnet1d18", description="see models.ecg.factory.ECG_ARCHITECTURES / models.cxr.network.CXR_ARCHITECTURES"
    )
    width: int = Field(32, ge=1, le=1024, description="XResNet1d stem width / Inception1d filters per branch")
    input_pool: int = Field(1, ge=1, le=20, description="average-pool the input by this factor first (5: 500 → 100 Hz)")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="further constructor kwargs (ECG: layers, kernel_size, head_dropout ...; CXR: all "
        "build_cxr_model kwargs, e.g. dropout_prob, growth_rate; width/input_pool are ignored)",
    )

    def build_kwargs(self) -> dict[str, Any]:
        return {"width": self.width, "input_pool": self.input_pool, **self.params}


# Where training data come from. Generated: synthetic (ECG), phantom (CXR). Real layouts are read by
# the adapters in datasets.sources (one module per layout); dicom and worklist serve both tasks.
ECG_SOURCES = ("synthetic", "cinc", "ptbxl", "ptbxl+cinc", "dicom", "worklist")
CXR_SOURCES = ("nih", "phantom", "nih+phantom", "chexpert", "medmnist", "dicom", "worklist")
GENERATED_SOURCES = ("synthetic", "phantom", "nih+phantom")
DEFAULT_GENERATED_N = 2000
# Label sets each source can give (``preread``: the labels the service serves and triages).
LABEL_SETS = {
    "synthetic": ("preread",),
    "phantom": ("preread",),
    "nih+phantom": ("preread",),
    "nih": ("preread",),
    "chexpert": ("preread",),
    "medmnist": ("preread",),
    "dicom": ("preread",),
    "worklist": ("preread",),
    "cinc": ("preread", "snomed", "superclass"),
    "ptbxl+cinc": ("superclass",),
    "ptbxl": ("preread", "diagnostic", "subdiagnostic", "superdiagnostic", "form", "rhythm", "all"),
}


class DataSection(_Section):
    source: Literal[
        "synthetic",
        "cinc",
        "ptbxl",
        "ptbxl+cinc",
        "nih",
        "phantom",
        "nih+phantom",
        "chexpert",
        "medmnist",
        "dicom",
        "worklist",
    ] = Field(
        "synthetic",
        validation_alias=AliasChoices("format", "source"),
        description="the data's layout (key `format`, or `source` as in older configs): synthetic | cinc | ptbxl "
        "| ptbxl+cinc (ECG; the last is the default model's real data, training/ecg_default.py); "
        "nih | chexpert | medmnist | phantom | nih+phantom (chest X-ray); dicom | worklist (both)",
    )
    n: int | None = Field(
        None,
        ge=2,
        description=f"synthetic / phantom / nih+phantom: records or phantoms to generate "
        f"(default {DEFAULT_GENERATED_N}); real layouts: use at most this many cases (None: all)",
    )
    seed: int = 0
    val_fraction: float = Field(
        0.2,
        gt=0.0,
        lt=1.0,
        description="share of patients drawn for validation when the "
        "layout defines no validation split (PTB-XL, MedMNIST, CheXpert valid.csv do)",
    )
    test_n: int = Field(0, ge=0, description="synthetic / phantom: size of an extra held-out test set (another seed)")
    test_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="nih class folders: share of each class's patients "
        "held out as the test split (seeded, before validation is drawn; never tuned on)",
    )
    test_path: Path | None = Field(
        None,
        description="nih: a second class-folder set kept wholly as held-out test "
        "(e.g. ../shared/data/cxr/nih); its patients never reach training or validation",
    )
    path: Path | None = Field(
        None,
        description="synthetic: cache folder (None: no dataset cache); cinc: the WFDB folder; "
        "ptbxl: the PTB-XL root; nih: the Data_Entry CSV folder or class folders (None: "
        "$PREREAD_SHARED_DATA/cxr/nih or ../shared/data/cxr/nih beside the repository); "
        "chexpert: the folder or a CSV; medmnist: the .npz; dicom: the folder with labels.csv; "
        "worklist: the signed-reads export",
    )
    label_set: str = Field(
        "preread",
        description="which labels to train: preread (the served labels) everywhere; "
        "ptbxl also diagnostic | subdiagnostic | superdiagnostic | form | rhythm | all; "
        "cinc also snomed",
    )
    sampling_rate: Literal[100, 500] = Field(
        500, description="ptbxl: read records100 or records500 (both are resampled to 500 Hz by the preprocessing)"
    )
    min_likelihood: float = Field(
        0.0,
        ge=0.0,
        le=100.0,
        description="ptbxl: ignore diagnostic statements less likely "
        "than this (0: the benchmark's rule, every statement counts)",
    )
    uncertain: Literal["ones", "zeros", "ignore"] = Field(
        "ignore", description="chexpert: uncertain (-1) labels become 1, 0 or unknown (masked out of the loss)"
    )
    unmentioned: Literal["zeros", "ignore"] = Field("zeros", description="chexpert: blank (not mentioned) labels")
    views: Literal["frontal", "lateral", "all"] = Field("frontal", description="chexpert: which films to use")
    held_out_fold: int | None = Field(
        None,
        ge=1,
        le=8,
        description="ptbxl+cinc: a PTB-XL training fold left out of "
        "training and tuning and reported as the test split (a hold-out estimate "
        "of the whole recipe); None: train on folds 1-8",
    )
    cache_dir: Path | None = Field(
        None,
        description="real layouts: keep the preprocessed inputs here and reuse "
        "them (keyed by the cases and the preprocessing)",
    )
    image_size: int = Field(224, ge=32, le=1024, description="cxr: network input side in pixels (letterboxed square)")
    channels: Literal[1, 3] = Field(1, description="cxr: input channels (1: grayscale; 3: repeated, ImageNet stats)")
    phantom_size: int = Field(256, ge=64, le=2048, description="cxr: side of the drawn phantoms before preprocessing")
    phantom_prevalence: float = Field(0.3, gt=0.0, lt=1.0, description="cxr: probability of each phantom finding")

    @model_validator(mode="after")
    def _consistent(self) -> DataSection:
        if self.source in GENERATED_SOURCES and self.n is None:
            self.n = DEFAULT_GENERATED_N
        if self.source not in ("synthetic", "phantom", "nih", "nih+phantom", "ptbxl+cinc") and self.path is None:
            what = {
                "cinc": "a folder of CinC 2021 .hea/.mat records",
                "ptbxl": "the PTB-XL root",
                "chexpert": "the CheXpert folder or CSV",
                "medmnist": "the MedMNIST .npz",
                "dicom": "a folder with labels.csv",
                "worklist": "the signed-reads export",
            }[self.source]
            raise ValueError(f"data.path is required for source {self.source!r} ({what})")
        allowed = LABEL_SETS[self.source]
        if self.label_set not in allowed:
            raise ValueError(
                f"data.label_set {self.label_set!r} is not available for {self.source!r} ({', '.join(allowed)})"
            )
        return self


class AugmentSection(_Section):
    """Training-time augmentation (never at validation, test or serving). Chest X-rays: the MONAI set
    in training.cxr.CxrAugment. ECGs: datasets.ecg.augment, each transform with ``probability``."""

    enabled: bool = True
    probability: float = Field(0.5, ge=0.0, le=1.0, description="ECG: chance of each transform per record")
    amplitude_scale: float = Field(0.1, ge=0.0, lt=1.0, description="ECG: gain drawn from 1 ± this (all leads)")
    baseline_wander_mv: float = Field(0.05, ge=0.0, le=2.0, description="ECG: peak residual baseline wander (mV)")
    noise_std_mv: float = Field(0.02, ge=0.0, le=1.0, description="ECG: Gaussian noise std at most this (mV)")
    max_shift_s: float = Field(0.4, ge=0.0, le=5.0, description="ECG: time shift within ± this (s), zero-filled")


class DistributedSection(_Section):
    """Data-parallel training with Ray Train's TorchTrainer (DDP) when ``num_workers`` > 1."""

    num_workers: int = Field(1, ge=1, le=4096, description="training processes (ranks); 1: train in this process")
    use_gpu: bool = Field(False, description="one GPU per worker (NCCL); else CPU workers (Gloo)")
    resources_per_worker: dict[str, float] = Field(
        default_factory=dict, description="Ray resources per worker, e.g. {CPU: 4} or {CPU: 8, GPU: 1}"
    )
    address: str | None = Field(
        None,
        description="Ray cluster address: 'auto' joins the cluster this node belongs to "
        "(ray start), 'ray://HOST:10001' a remote one; None: the Ray this process already "
        "runs, else a new local instance (never a cluster found by chance on the machine)",
    )
    storage_path: Path | None = Field(
        None,
        description="where Ray Train keeps run checkpoints (shared storage on a cluster; None: checkpoint_dir/ray)",
    )
    max_failures: int = Field(0, ge=-1, description="worker-group restarts from the last checkpoint (-1: unlimited)")


class OptimSection(_Section):
    epochs: int = Field(10, ge=1, le=10_000)
    batch_size: int = Field(64, ge=2, le=65_536)
    lr: float = Field(1e-2, gt=0.0, le=10.0, description="peak learning rate (one-cycle) / initial (cosine)")
    weight_decay: float = Field(1e-2, ge=0.0)
    scheduler: Literal["onecycle", "cosine"] = "onecycle"
    grad_clip: float | None = Field(1.0, gt=0.0, description="max gradient norm; None: no clipping")


class EarlyStoppingSection(_Section):
    metric: Literal["val_macro_auroc", "val_loss"] = "val_macro_auroc"
    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0.0)

    @property
    def mode(self) -> Literal["max", "min"]:
        return "min" if self.metric == "val_loss" else "max"


class RegistrySection(_Section):
    name: str = "ecg"
    alias: str | None = Field("champion", description="alias to point at the new version; None: none")
    root: Path | None = Field(None, description="None: $PREREAD_REGISTRY or var/registry (or the registry passed in)")


class TrackingSection(_Section):
    """Experiment tracking (MLflow) of `preread train` runs: parameters, per-epoch metrics, curves,
    the card. With an MLflow registry the run lives in the registry's store (the version's files
    are the run's artifacts), so ``uri`` may only repeat it."""

    enabled: bool = True
    uri: str | None = Field(
        None,
        description="MLflow tracking URI; None: the registry's store if it is MLflow, "
        "else $MLFLOW_TRACKING_URI, else sqlite:///var/mlflow/mlflow.db",
    )
    experiment: str | None = Field(None, description="None: preread-<task>")
    run_name: str | None = Field(None, description="None: <architecture> <data source> <time>")

    @model_validator(mode="after")
    def _mlflow_uri(self) -> TrackingSection:
        if self.uri is not None:
            if registry_kind(self.uri) != "mlflow":
                raise ValueError(
                    f"tracking.uri {self.uri!r} is not an MLflow tracking URI "
                    "(sqlite:///…, http(s)://…, postgresql://…, databricks)"
                )
        return self


class ExportSection(_Section):
    onnx: bool = True
    torchscript: bool = True
    parity_tolerance: float = Field(1e-4, gt=0.0, le=1e-2)
    parity_samples: int = Field(
        32, ge=1, description="real validation inputs compared between PyTorch and ONNX Runtime"
    )


class TrainConfig(_Section):
    task: Literal["ecg", "cxr"]
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    optim: OptimSection = OptimSection()
    seed: int = 0
    early_stopping: EarlyStoppingSection = EarlyStoppingSection()
    augment: AugmentSection = AugmentSection()
    distributed: DistributedSection = DistributedSection()
    checkpoint_dir: Path = Path("var/checkpoints/ecg")
    registry: RegistrySection = RegistrySection()
    export: ExportSection = ExportSection()
    threshold_method: Literal["youden", "f1", "fixed"] = Field(
        "youden", description="per-label decision thresholds from validation data; 'fixed' keeps 0.5"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    intended_use: str | None = Field(None, description="card text; demo (synthetic) models get the standard DEMO text")
    demo: bool | None = Field(
        None,
        description="the card's demo flag; None: demo when the data include phantoms / "
        "synthetic records (a small real-data model can set it true: not for clinical use)",
    )
    tracking: TrackingSection = TrackingSection()

    @model_validator(mode="after")
    def _known_architecture(self) -> TrainConfig:
        if self.task == "ecg":
            if self.model.architecture not in ECG_ARCHITECTURES:
                raise ValueError(
                    f"model.architecture {self.model.architecture!r} is not an ECG architecture "
                    f"({', '.join(ECG_ARCHITECTURES)})"
                )
            if self.data.source not in ECG_SOURCES:
                raise ValueError(f"data.source {self.data.source!r} is not an ECG source ({', '.join(ECG_SOURCES)})")
        if self.task == "cxr":
            if self.model.architecture not in CXR_ARCHITECTURES:
                raise ValueError(
                    f"model.architecture {self.model.architecture!r} is not a chest X-ray architecture "
                    f"({', '.join(CXR_ARCHITECTURES)})"
                )
            if self.data.source not in CXR_SOURCES:
                raise ValueError(
                    f"data.source {self.data.source!r} is not a chest X-ray source ({', '.join(CXR_SOURCES)})"
                )
        if self.distributed.use_gpu and self.device == "cpu":
            raise ValueError("distributed.use_gpu is true but device is 'cpu'")
        if not self.export.onnx and not self.export.torchscript:
            # The state dict is always saved, but serving's default backend needs ONNX or TorchScript.
            raise ValueError("export: at least one of onnx / torchscript must be true")
        return self


def _format_errors(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def load_train_config(path: str | Path) -> TrainConfig:
    """Read and validate a training YAML; ``TrainConfigError`` lists every problem with its field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TrainConfigError(f"cannot read training config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise TrainConfigError(f"training config {path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise TrainConfigError(f"training config {path} must be a mapping of settings, got {type(raw).__name__}")
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise TrainConfigError(f"invalid training config {path}:\n{_format_errors(exc)}") from None
