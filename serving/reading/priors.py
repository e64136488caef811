"""Comparison with the patient's prior: the first thing a cardiologist or radiologist looks at.

The prior is the latest earlier study of the same patient and the same kind (ECG with ECG, chest film
with chest film) that has an AI read. "Same patient" is the deployment's identity rule
(``priors.identity`` in the serving config: patient ID + issuer of patient ID by default), applied
through ``Study.patient_key`` (a keyed hash made at ingest, before the ID is masked), so the masked
IDs on the worklist never decide who is who.

The comparison (``PreRead.prior``): for an ECG the measurement deltas (HR, PR, QRS, QTc, axes) and the
statements that are new or resolved, with the sentence a reader expects ("与 2026-11-02 心电图比较：新出现
心房颤动"); for a chest film the findings that are new or resolved. No prior is said, not implied: the
page and the report print "no prior" when ``prior`` is None.
"""

from __future__ import annotations

import logging
from datetime import datetime

from datasets.vocabulary import i18n
from datasets.vocabulary.ecg_measurements import AXIS_MEASUREMENTS, PRIOR_DELTA_MEASUREMENTS
from models.read import PreRead, PriorComparison
from serving.services import Services
from serving.store.db import Database, as_utc
from serving.store.priors import find_prior

log = logging.getLogger("preread.priors")


def kind_of(modality: str | None) -> str:
    """ECG or CXR: the kind a prior must share (CR and DX chest films compare with each other)."""
    return "ECG" if (modality or "").upper() == "ECG" else "CXR"


def study_day(study_date: str | None, arrived_at: datetime | None) -> str | None:
    """YYYY-MM-DD from the DICOM StudyDate (YYYYMMDD), else from the arrival time."""
    if study_date and len(study_date) == 8 and study_date.isdigit():
        return f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:]}"
    return arrived_at.date().isoformat() if arrived_at else None


def _delta(key: str, now: object, before: object) -> float | None:
    if not isinstance(now, (int, float)) or not isinstance(before, (int, float)):
        return None
    change = float(now) - float(before)
    if key in AXIS_MEASUREMENTS:  # axes live on a circle: +170° to -170° is a 20° change, not 340°
        change = (change + 180.0) % 360.0 - 180.0
    return round(change, 1)


def _codes(read: PreRead) -> list[str]:
    """What a comparison compares: ECG statement codes, or the chest film's positive finding codes."""
    if read.modality == "ECG":
        return [statement.code for statement in read.statements]
    return [finding.code for finding in read.positive_findings()]


def compare(
    current: PreRead, prior: PreRead, prior_uid: str, prior_date: str | None, locale: str | None = None
) -> PriorComparison:
    """The comparison of ``current`` with ``prior`` (same patient, same kind, earlier)."""
    deltas: dict[str, float | None] = {}
    if current.modality == "ECG":
        deltas = {
            key: _delta(key, current.measurements.get(key), prior.measurements.get(key))
            for key in PRIOR_DELTA_MEASUREMENTS
            if key in current.measurements or key in prior.measurements
        }
    now, before = _codes(current), _codes(prior)
    new = [code for code in now if code not in before]
    resolved = [code for code in before if code not in now]
    text = comparison_text(
        locale, current.modality, prior_date, new, resolved, names={**_names(prior), **_names(current)}
    )
    return PriorComparison(
        study_uid=prior_uid, date=prior_date, deltas=deltas, new_statements=new, resolved_statements=resolved, text=text
    )


def _names(read: PreRead) -> dict[str, str]:
    """English names the read carries, the fallback for a code the catalog lacks."""
    if read.modality == "ECG":
        return {statement.code: statement.name for statement in read.statements}
    return {finding.code: finding.name for finding in read.findings}


def comparison_text(
    locale: str | None,
    modality: str,
    date: str | None,
    new: list[str],
    resolved: list[str],
    names: dict[str, str] | None = None,
) -> str:
    """与 2026-11-02 心电图比较：新出现心房颤动；窦性心动过缓已消失 (in the locale)."""
    names = names or {}
    kind = kind_of(modality)

    def name(code: str) -> str:
        if kind == "ECG":
            return i18n.statement_name(locale, code, names.get(code))
        return i18n.finding_name(locale, "CXR", code, names.get(code))

    join = i18n.translate(locale, "report", "list_separator").join
    clauses = []
    if new:
        clauses.append(i18n.translate(locale, "report", "prior.new", items=join(name(c) for c in new)))
    if resolved:
        clauses.append(i18n.translate(locale, "report", "prior.resolved", items=join(name(c) for c in resolved)))
    if not clauses:
        clauses.append(i18n.translate(locale, "report", "prior.unchanged"))
    prefix = i18n.translate(
        locale, "report", "prior.prefix", date=date or "?", kind=i18n.translate(locale, "report", f"kind.{kind}")
    )
    return prefix + i18n.translate(locale, "report", "prior.clause_separator").join(clauses)


class PriorComparer:
    """``WorkQueue.annotate``: a read about to be recorded gets its comparison with the patient's prior
    (or says there is none: ``prior`` None). Never fails a read: a prior that cannot be compared (an old
    stored read that no longer validates) is logged and left out."""

    def __init__(self, db: Database, locale: str | None):
        self.db, self.locale = db, locale

    def __call__(self, study_uid: str, read: PreRead) -> PreRead:
        try:
            study = self.db.get_study(study_uid)
            prior = find_prior(self.db, study) if study is not None else None
            if prior is None or prior.pre_read is None:
                return read.model_copy(update={"prior": None})
            day = study_day(prior.study_date, as_utc(prior.arrived_at))
            return read.model_copy(update={"prior": compare(read, prior.pre_read, prior.study_uid, day, self.locale)})
        except Exception as exc:  # noqa: BLE001 - the comparison is an aid: the read itself must still be recorded
            log.warning("no prior comparison for %s: %s: %s", study_uid, type(exc).__name__, exc)
            return read


def install(services: Services) -> None:
    """Compare every read this replica records with the patient's prior (unless ``priors.enabled`` is
    off). Called by the composition roots (serving/app.py, serving/local.py) after build_services."""
    cfg = services.config
    services.ecg.queue.annotate = PriorComparer(services.db, cfg.locale) if cfg.priors.enabled else None
