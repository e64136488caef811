"""Training configuration: YAML validated by pydantic (configs/train/*.yaml).

Relative paths (checkpoint_dir, data.path, registry.root) are taken from the working directory,
as everywhere in preread (the CLI runs from the repository root).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class TrainConfigError(ValueError):
    """A training config file that cannot be read or does not validate; the message lists each problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelSection(_Section):
    architecture: str = Field("xresnet1d18", description="see models.ecg.factory.ECG_ARCHITECTURES / models.cxr.network.CXR_ARCHITECTURES")
    width: int = Field(32, ge=1, le=1024, description="XResNet1d stem width / Inception1d filters per branch")
    input_pool: int = Field(1, ge=1, le=20, description="average-pool the input by this factor first (5: 500 → 100 Hz)")
    params: dict[str, Any] = Field(default_factory=dict, description="further constructor kwargs (ECG: layers, kernel_size, head_dropout ...; CXR: all build_cxr_model kwargs, e.g. dropout_prob, growth_rate; width/input_pool are ignored)")

    def build_kwargs(self) -> dict[str, Any]:
        return {"width": self.width, "input_pool": self.input_pool, **self.params}


ECG_SOURCES = ("synthetic", "cinc")
CXR_SOURCES = ("nih", "phantom", "nih+phantom")


class DataSection(_Section):
    source: Literal["synthetic", "cinc", "nih", "phantom", "nih+phantom"] = "synthetic"
    n: int | None = Field(2000, ge=2, description="synthetic: records to generate; cinc: at most this many (None: all); "
                          "phantom, nih+phantom: chest phantoms to generate; nih: at most this many images")
    seed: int = 0
    val_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    test_n: int = Field(0, ge=0, description="synthetic / phantom: size of an extra held-out test set (another seed)")
    path: Path | None = Field(None, description="synthetic: cache folder (None: no dataset cache); cinc: the WFDB folder; "
                              "nih: the folder of <Finding>/<image>.png (None: $PREREAD_SHARED_DATA/cxr/nih or "
                              "../shared/data/cxr/nih beside the repository)")
    image_size: int = Field(224, ge=32, le=1024, description="cxr: network input side in pixels (letterboxed square)")
    channels: Literal[1, 3] = Field(1, description="cxr: input channels (1: grayscale; 3: repeated, ImageNet stats)")
    phantom_size: int = Field(256, ge=64, le=2048, description="cxr: side of the drawn phantoms before preprocessing")
    phantom_prevalence: float = Field(0.3, gt=0.0, lt=1.0, description="cxr: probability of each phantom finding")

    @model_validator(mode="after")
    def _path_for_real_data(self) -> "DataSection":
        if self.source == "cinc" and self.path is None:
            raise ValueError("data.path is required for source 'cinc' (a folder of CinC 2021 .hea/.mat records)")
        if self.source in ("synthetic", "phantom", "nih+phantom") and self.n is None:
            raise ValueError(f"data.n is required for source {self.source!r}")
        return self


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
    uri: str | None = Field(None, description="MLflow tracking URI; None: the registry's store if it is MLflow, "
                            "else $MLFLOW_TRACKING_URI, else sqlite:///var/mlflow/mlflow.db")
    experiment: str | None = Field(None, description="None: preread-<task>")
    run_name: str | None = Field(None, description="None: <architecture> <data source> <time>")

    @model_validator(mode="after")
    def _mlflow_uri(self) -> "TrackingSection":
        if self.uri is not None:
            from models.registry import registry_kind

            if registry_kind(self.uri) != "mlflow":
                raise ValueError(f"tracking.uri {self.uri!r} is not an MLflow tracking URI "
                                 "(sqlite:///…, http(s)://…, postgresql://…, databricks)")
        return self


class ExportSection(_Section):
    onnx: bool = True
    torchscript: bool = True
    parity_tolerance: float = Field(1e-4, gt=0.0, le=1e-2)
    parity_samples: int = Field(32, ge=1, description="real validation inputs compared between PyTorch and ONNX Runtime")


class TrainConfig(_Section):
    task: Literal["ecg", "cxr"]
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    optim: OptimSection = OptimSection()
    seed: int = 0
    early_stopping: EarlyStoppingSection = EarlyStoppingSection()
    checkpoint_dir: Path = Path("var/checkpoints/ecg")
    registry: RegistrySection = RegistrySection()
    export: ExportSection = ExportSection()
    threshold_method: Literal["youden", "f1", "fixed"] = Field(
        "youden", description="per-label decision thresholds from validation data; 'fixed' keeps 0.5")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: torch's default)")
    intended_use: str | None = Field(None, description="card text; demo (synthetic) models get the standard DEMO text")
    tracking: TrackingSection = TrackingSection()

    @model_validator(mode="after")
    def _known_architecture(self) -> "TrainConfig":
        if self.task == "ecg":
            from models.ecg.factory import ECG_ARCHITECTURES

            if self.model.architecture not in ECG_ARCHITECTURES:
                raise ValueError(f"model.architecture {self.model.architecture!r} is not an ECG architecture "
                                 f"({', '.join(ECG_ARCHITECTURES)})")
            if self.data.source not in ECG_SOURCES:
                raise ValueError(f"data.source {self.data.source!r} is not an ECG source ({', '.join(ECG_SOURCES)})")
        if self.task == "cxr":
            from models.cxr.network import CXR_ARCHITECTURES

            if self.model.architecture not in CXR_ARCHITECTURES:
                raise ValueError(f"model.architecture {self.model.architecture!r} is not a chest X-ray architecture "
                                 f"({', '.join(CXR_ARCHITECTURES)})")
            if self.data.source not in CXR_SOURCES:
                raise ValueError(f"data.source {self.data.source!r} is not a chest X-ray source ({', '.join(CXR_SOURCES)})")
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
