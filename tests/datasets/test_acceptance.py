"""The acceptance check before a chest X-ray is read (datasets.imaging.acceptance), on real images:
pydicom's CT and MR test slices, deid-data's cat chest DX, CT heads and ultrasound, the real PA chest
CR RG1_UNCR.dcm (MONOCHROME1) as sent and rotated / relabelled / made lateral / a child's / shrunk,
and held-out NIH films (never seen by the orientation model) wrapped as DX."""

from __future__ import annotations

import importlib.util
from copy import deepcopy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from datasets.imaging import read_dicom_image, wrap_png_as_dicom
from datasets.imaging.acceptance import AcceptancePolicy, check_chest_film
from datasets.imaging.orientation import default_orientation_model, variant
from datasets.vocabulary import QualityReason as Q


def pydicom_file(name: str) -> str:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} not available (install pydicom-data)")
    return path


def deid_file(relative: str) -> Path:
    if importlib.util.find_spec("deid_data") is None:
        pytest.skip("deid-data not installed")
    import deid_data

    return Path(deid_data.__file__).parent / "data" / relative


@pytest.fixture(scope="module")
def chest_cr() -> pydicom.Dataset:
    return pydicom.dcmread(pydicom_file("RG1_UNCR.dcm"))


def with_pixels(ds: pydicom.Dataset, pixels: np.ndarray) -> pydicom.Dataset:
    out = deepcopy(ds)
    pixels = np.ascontiguousarray(pixels.astype(ds.pixel_array.dtype))
    out.Rows, out.Columns = pixels.shape
    out.PixelData = pixels.tobytes()
    return out


def codes(ds_or_path) -> list[Q]:
    return check_chest_film(read_dicom_image(ds_or_path)).codes


def test_real_chest_film_is_accepted_as_sent(chest_cr):
    record = read_dicom_image(chest_cr)
    assert record.photometric == "MONOCHROME1"  # handled: the reader inverts it before the check
    verdict = check_chest_film(record)
    assert verdict.acceptable, verdict.reasons
    assert verdict.checked["image"]["rotation"] == 0 and verdict.checked["image"]["inverted"] is False


@pytest.mark.parametrize("turns, angle", [(1, 270), (2, 180), (3, 90)])
def test_rotated_film_is_refused_from_the_pixels(chest_cr, turns, angle):
    # np.rot90 turns counter-clockwise: k=1 is a film rotated 270° clockwise.
    verdict = check_chest_film(read_dicom_image(with_pixels(chest_cr, np.rot90(chest_cr.pixel_array, k=turns))))
    assert verdict.codes == [Q.CXR_ROTATED]
    assert verdict.reasons[0].evidence == "image" and verdict.reasons[0].detail["rotation"] == angle


def test_monochrome1_relabelled_monochrome2_is_caught(chest_cr):
    wrong = deepcopy(chest_cr)
    wrong.PhotometricInterpretation = "MONOCHROME2"  # same pixels, wrong label: shown inverted
    verdict = check_chest_film(read_dicom_image(wrong))
    assert verdict.codes == [Q.CXR_INVERTED] and "MONOCHROME2" in verdict.reasons[0].text


def test_header_evidence_lateral_child_small(chest_cr):
    lateral = deepcopy(chest_cr)
    lateral.ViewPosition = "LL"
    assert codes(lateral) == [Q.CXR_LATERAL]
    child = deepcopy(chest_cr)
    child.PatientAge = "006Y"
    assert codes(child) == [Q.CXR_PAEDIATRIC]
    infant = deepcopy(chest_cr)
    infant.PatientAge = "010M"
    assert codes(infant) == [Q.CXR_PAEDIATRIC]
    adult = deepcopy(chest_cr)
    adult.PatientAge = "045Y"
    assert codes(adult) == []
    small = with_pixels(chest_cr, chest_cr.pixel_array[::10, ::10])  # 196 × 185 pixels
    assert codes(small) == [Q.CXR_TOO_SMALL]
    hand = deepcopy(chest_cr)
    hand.BodyPartExamined = "HAND"
    assert codes(hand) == [Q.CXR_NOT_CHEST]


def test_ct_and_mr_slices_are_not_chest_films():
    assert Q.CXR_NOT_CHEST in codes(pydicom_file("CT_small.dcm"))
    assert Q.CXR_NOT_CHEST in codes(pydicom_file("MR_small.dcm"))


@pytest.mark.parametrize(
    "relative",
    ["animals/cat.dcm", "humans/ctbrain1.dcm", "ultrasounds/GREYSCALE_IMAGE.dcm", "ultrasounds/RGB_IMAGE.dcm"],
)
def test_deid_data_negatives(relative):
    assert Q.CXR_NOT_CHEST in codes(deid_file(relative))


def as_dx_chest(relative: str):
    """Header stripped to a DX CHEST label on whatever the image is."""
    record = read_dicom_image(deid_file(relative))
    record.modality, record.body_part, record.sop_class_uid, record.meta = "DX", "CHEST", None, {}
    return record


@pytest.mark.parametrize("relative", ["humans/ctbrain1.dcm", "ultrasounds/GREYSCALE_IMAGE.dcm"])
def test_image_evidence_alone_refuses_non_chest_images(relative):
    verdict = check_chest_film(as_dx_chest(relative))
    assert verdict.codes == [Q.CXR_NOT_CHEST] and verdict.reasons[0].evidence == "image"


def test_cat_chest_labelled_human_is_still_refused_from_the_pixels():
    # Without its species attribute the cat's chest is not read either, but the image model calls it a
    # rotated film rather than "not a (human) chest": it is refused, for a coarse reason.
    verdict = check_chest_film(as_dx_chest("animals/cat.dcm"))
    assert not verdict.acceptable and verdict.reasons[0].evidence == "image"


def test_held_out_nih_films_accepted_and_their_variants_caught(nih_dir):
    """The 40 films of cxr/nih are the default model's held-out test: the orientation model never saw them."""
    model = default_orientation_model()
    paths = sorted(nih_dir.glob("*/*.png"))
    accepted = sum(
        check_chest_film(read_dicom_image(wrap_png_as_dicom(path, patient_age="050Y"))).acceptable for path in paths
    )
    assert accepted >= 38, f"only {accepted} of {len(paths)} real frontal films accepted"
    from datasets.imaging import read_image

    wrong = 0
    for path in paths[::4]:
        pixels = read_image(path).pixels
        for angle in (0, 90, 180, 270):
            for inverted in (False, True):
                evidence = model.evidence(variant(pixels, angle, inverted))
                wrong += (evidence.rotation, evidence.inverted) != (angle, inverted)
    assert wrong <= 2


def test_policy_is_configurable(chest_cr):
    child = deepcopy(chest_cr)
    child.PatientAge = "016Y"
    assert check_chest_film(read_dicom_image(child)).codes == [Q.CXR_PAEDIATRIC]
    assert check_chest_film(read_dicom_image(child), AcceptancePolicy(min_age_years=14)).acceptable
