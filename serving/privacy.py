"""Masking of patient identifiers for the worklist and logs (PIPL: health data is sensitive)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Required, TypedDict, Unpack


def mask_name(name: str | None) -> str | None:
    """'Zhang^San' / 'Zhang San' → 'Z**** S**'; '张^三' / '张三' → '张*'; a DICOM PN with its alphabetic and
    ideographic groups ('Zhang^San=张^三') → 'Z**** S**=张*': enough for a reader to match a phone call, not
    to identify. A Chinese name keeps only its first character (the family name, or its first half)."""
    if not name:
        return name
    return "=".join(_mask_group(group) for group in str(name).split("="))


def _mask_group(group: str) -> str:
    parts = [p for p in group.replace("^", " ").split() if p]
    if any(_is_cjk(ch) for ch in group):
        joined = "".join(parts)  # 张^三 is one name of two characters: never show a given name in full
        return joined[:1] + "*" * max(1, len(joined) - 1) if joined else ""
    return " ".join(p[0] + "*" * (len(p) - 1) for p in parts)


def _is_cjk(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" or "\U00020000" <= ch <= "\U0003134f"


def mask_id(patient_id: str | None) -> str | None:
    """Keep the last 4 characters: '530102199001011234' → '**************1234'."""
    if not patient_id:
        return patient_id
    text = str(patient_id)
    keep = 4 if len(text) > 6 else 1
    return "*" * (len(text) - keep) + text[-keep:]


# DICOM JSON (PS3.18 F.2) attributes that identify the patient: masked like the worklist in every
# answer that is not the original object itself (QIDO-RS, WADO-RS /metadata).
_JSON_NAMES = ("00100010", "00101001", "00101060")  # PatientName, OtherPatientNames, MotherBirthName
_JSON_IDS = ("00100020", "00101000", "00101002")  # PatientID, OtherPatientIDs, its sequence
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


IDENTITY_FIELDS = ("patient_id", "issuer", "name", "birth_date", "sex")
"""What a site's identity rule (``priors.identity`` in the serving config) may combine."""


class PatientIdentity(TypedDict, total=False):
    """What can tell one patient from another (as sent, before masking); ``site`` and ``patient_id``
    always given, the rest where the object carries them."""

    site: Required[str]
    patient_id: Required[str | None]
    issuer: str | None
    name: str | None
    birth_date: str | None
    sex: str | None


def identity_string(rule: tuple[str, ...] | list[str], **identity: Unpack[PatientIdentity]) -> str | None:
    """The canonical text of a patient's identity under ``rule`` (patient ID + issuer of patient ID by
    default), before any masking; None when a field the rule needs is missing (then no prior is
    looked for: a wrong prior is worse than none). A missing issuer means the sending site's own
    register (IDs are issued per hospital information system). The caller keys it (HMAC with the
    deployment secret) so the stored key reveals nothing and masked IDs never decide who is who."""
    values = {
        "patient_id": (identity["patient_id"] or "").strip(),
        "issuer": (identity.get("issuer") or "").strip() or f"site:{identity['site']}",
        "name": (identity.get("name") or "").strip().upper(),
        "birth_date": (identity.get("birth_date") or "").strip(),
        "sex": (identity.get("sex") or "").strip().upper(),
    }
    parts = []
    for field in rule:
        if field not in values:
            raise ValueError(f"unknown identity field {field!r}; known: {', '.join(IDENTITY_FIELDS)}")
        if not values[field]:
            return None
        parts.append(f"{field}={values[field]}")
    return "|".join(parts) if parts else None


@dataclass(frozen=True)
class PatientKeyer:
    """``Study.patient_key``: HMAC-SHA256 (the deployment secret) of the identity under the site's rule,
    or None when the rule's fields are missing. Made at ingest, before the ID and name are masked."""

    secret: str
    rule: tuple[str, ...] = ("patient_id", "issuer")

    def __call__(self, **identity: Unpack[PatientIdentity]) -> str | None:
        text = identity_string(self.rule, **identity)
        if text is None:
            return None
        return hmac.new(self.secret.encode(), f"patient:{text}".encode(), hashlib.sha256).hexdigest()[:32]
