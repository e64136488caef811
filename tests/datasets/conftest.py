"""Layout fixtures (built once per session in temporary folders, from the real samples)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.datasets import layouts


@pytest.fixture(scope="session")
def ptbxl_root(tmp_path_factory, cinc_dir: Path) -> Path:
    return layouts.write_ptbxl(tmp_path_factory.mktemp("ptbxl") / "ptb-xl", cinc_dir)


@pytest.fixture(scope="session")
def cinc2020_root(tmp_path_factory, cinc_dir: Path) -> Path:
    return layouts.write_cinc2020(tmp_path_factory.mktemp("cinc2020"), cinc_dir)


@pytest.fixture(scope="session")
def nih_csv_root(tmp_path_factory, nih_dir: Path) -> Path:
    return layouts.write_nih_csv(tmp_path_factory.mktemp("nih-csv"), nih_dir, extra_findings={1: "Pneumonia|Effusion"})


@pytest.fixture(scope="session")
def chexpert_root(tmp_path_factory, nih_dir: Path) -> Path:
    return layouts.write_chexpert(tmp_path_factory.mktemp("chexpert"), nih_dir)


@pytest.fixture(scope="session")
def medmnist_file(tmp_path_factory, nih_dir: Path) -> Path:
    return layouts.write_medmnist(tmp_path_factory.mktemp("medmnist") / "chestmnist.npz", nih_dir)


@pytest.fixture(scope="session")
def dicom_root(tmp_path_factory, nih_dir: Path) -> Path:
    return layouts.write_dicom_folder(tmp_path_factory.mktemp("dicom") / "handover", nih_dir)
