"""Fixtures for model tests: real preprocessed ECGs and small networks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datasets.ecg.readers import read_wfdb
from datasets.ecg.transforms import preprocess_signals


@pytest.fixture(scope="session")
def real_ecg_inputs(cinc_dir: Path) -> np.ndarray:
    """Eight real CinC 2021 records (Georgia + PTB-XL), through THE preprocessing: float32 [8, 12, 5000]."""
    headers = sorted(cinc_dir.glob("E075*.hea"))[:4] + sorted(cinc_dir.glob("HR06*.hea"))[:4]
    assert len(headers) == 8, f"expected CinC sample records in {cinc_dir}"
    batch = []
    for header in headers:
        record = read_wfdb(header).in_standard_order()
        batch.append(preprocess_signals(record.signals, record.sampling_rate))
    return np.stack(batch).astype(np.float32)


@pytest.fixture(scope="session")
def exported_model_dir(tmp_path_factory, real_ecg_inputs) -> Path:
    """A small trained-looking ECG model exported as a model directory (ONNX, TorchScript,
    state dict, card), as training stages it before registration."""
    import torch

    from datasets.vocabulary.ecg_labels import ECG_LABEL_CODES, ECG_LABELS
    from models.card import InputSpec, ModelCard, TrainingData
    from models.ecg.factory import build_ecg_model
    from models.export import export_onnx, export_torchscript

    directory = tmp_path_factory.mktemp("exported")
    torch.manual_seed(3)
    params = {"width": 8, "input_pool": 5}
    model = build_ecg_model("xresnet1d18", len(ECG_LABEL_CODES), **params)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.from_numpy(real_ecg_inputs))
    model.eval()
    example = torch.from_numpy(real_ecg_inputs[:1])
    export_onnx(model, directory / "model.onnx", example)
    export_torchscript(model, directory / "model.pt", example)
    torch.save(model.state_dict(), directory / "state_dict.pt")
    ModelCard(
        name="ecg",
        task="ecg",
        architecture="xresnet1d18",
        architecture_params=params,
        labels=list(ECG_LABEL_CODES),
        label_names=[label.name for label in ECG_LABELS],
        input=InputSpec(
            shape=[None, 12, 5000],
            sampling_rate=500,
            window_s=10.0,
            preprocessing="datasets.ecg.transforms.ecg_preprocess",
        ),
        training_data=TrainingData(description="test fixture", n_train=8, n_val=0, fingerprint_sha256="0" * 64),
        demo=True,
        intended_use="test fixture",
    ).save(directory)
    return directory
