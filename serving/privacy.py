"""Masking of patient identifiers for the worklist and logs (PIPL: health data is sensitive)."""

from __future__ import annotations


def mask_name(name: str | None) -> str | None:
    """'Zhang^San' / 'Zhang San' → 'Z**** S**': enough for a reader to match a phone call, not to identify."""
    if not name:
        return name
    parts = [p for p in str(name).replace("^", " ").split() if p]
    return " ".join(p[0] + "*" * (len(p) - 1) for p in parts)


def mask_id(patient_id: str | None) -> str | None:
    """Keep the last 4 characters: '530102199001011234' → '**************1234'."""
    if not patient_id:
        return patient_id
    text = str(patient_id)
    keep = 4 if len(text) > 6 else 1
    return "*" * (len(text) - keep) + text[-keep:]


# DICOM JSON (PS3.18 F.2) attributes that identify the patient: masked like the worklist in every
# answer that is not the original object itself (QIDO-RS, WADO-RS /metadata).
_JSON_NAMES = ("00100010", "00101001", "00101060")          # PatientName, OtherPatientNames, MotherBirthName
_JSON_IDS = ("00100020", "00101000", "00101002")            # PatientID, OtherPatientIDs, its sequence
_JSON_DROPPED = ("00100030", "00100032", "00101040", "00102154", "00101050")  # birth date/time, address, phone


def mask_dicom_json(item: dict, names: bool = True, ids: bool = True) -> dict:
    """A DICOM JSON dataset with patient names and ids masked (``mask_name``/``mask_id``) and birth date,
    birth time, address and telephone numbers emptied. Returns ``item`` (changed in place)."""
    for tag in _JSON_NAMES if names else ():
        for value in item.get(tag, {}).get("Value", []):
            if isinstance(value, dict):
                for group in list(value):
                    value[group] = mask_name(value[group])
    for tag in _JSON_IDS if ids else ():
        element = item.get(tag)
        if element and element.get("vr") != "SQ" and "Value" in element:
            element["Value"] = [mask_id(str(v)) for v in element["Value"]]
        elif element and element.get("vr") == "SQ":
            element.pop("Value", None)
    if names or ids:
        for tag in _JSON_DROPPED:
            if tag in item:
                item[tag] = {"vr": item[tag].get("vr", "UN")}
    return item
