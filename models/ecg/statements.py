"""Interpretive statements of an ECG read, each from its definition on the measurements, with the
evidence that triggered it, and the network's findings reconciled with them.

A statement with a definition (sinus tachycardia is sinus rhythm over 100 bpm) comes from that
definition, never from a network probability: the read cannot say "sinus tachycardia 0 %" at 120 bpm.
Where the network has a label for the same thing, its probability travels as evidence, and the
finding itself is re-stated from the definition (``Finding.source == "rule"``) so a finding never
contradicts the measurements. Rhythm: AF only with irregular RR *and* no consistent P wave.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets.ecg.measure import EcgMeasurements
from datasets.vocabulary.ecg_measurements import EcgLeadMeasurement as L
from datasets.vocabulary.ecg_measurements import EcgMeasurement as M
from datasets.vocabulary.ecg_statements import EcgStatement as S
from models.read import Finding, Statement

NAMES: dict[S, str] = {
    S.SINUS_RHYTHM: "Sinus rhythm",
    S.SINUS_BRADYCARDIA: "Sinus bradycardia",
    S.SINUS_TACHYCARDIA: "Sinus tachycardia",
    S.ATRIAL_FIBRILLATION: "Atrial fibrillation / flutter",
    S.AF_RAPID_RESPONSE: "Atrial fibrillation with rapid ventricular response",
    S.PACED_RHYTHM: "Paced rhythm",
    S.RHYTHM_UNDETERMINED: "Rhythm undetermined: no consistent P wave, regular RR",
    S.FIRST_DEGREE_AV_BLOCK: "1st-degree AV block",
    S.RBBB: "Right bundle branch block",
    S.LBBB: "Left bundle branch block",
    S.WIDE_QRS: "Nonspecific intraventricular conduction delay",
    S.QTC_PROLONGED: "Prolonged QTc",
    S.LEFT_AXIS_DEVIATION: "Left axis deviation",
    S.RIGHT_AXIS_DEVIATION: "Right axis deviation",
    S.EXTREME_AXIS: "Extreme axis deviation",
    S.LOW_VOLTAGE: "Low QRS voltage",
    S.LVH_VOLTAGE: "Left ventricular hypertrophy by voltage criteria",
    S.ST_ELEVATION: "ST elevation meeting STEMI criteria",
}

# Network label codes → the statements that define them: ours, PTB-XL SCP codes, and the CinC 2021
# scored abbreviations (datasets/vocabulary/ecg.py: NSR, SB, STach, AF, AFL, IAVB, LPR, CRBBB, ...).
DEFINITIONAL: dict[str, tuple[S, ...]] = {
    "STACH": (S.SINUS_TACHYCARDIA,),
    "STach": (S.SINUS_TACHYCARDIA,),
    "SBRAD": (S.SINUS_BRADYCARDIA,),
    "SB": (S.SINUS_BRADYCARDIA,),
    "SR": (S.SINUS_RHYTHM, S.SINUS_BRADYCARDIA, S.SINUS_TACHYCARDIA),
    "NSR": (S.SINUS_RHYTHM, S.SINUS_BRADYCARDIA, S.SINUS_TACHYCARDIA),
    "AF": (S.ATRIAL_FIBRILLATION,),
    "AFIB": (S.ATRIAL_FIBRILLATION,),
    "AFLT": (S.ATRIAL_FIBRILLATION,),
    "AFL": (S.ATRIAL_FIBRILLATION,),
    "1AVB": (S.FIRST_DEGREE_AV_BLOCK,),
    "IAVB": (S.FIRST_DEGREE_AV_BLOCK,),
    "LPR": (S.FIRST_DEGREE_AV_BLOCK,),
    "CRBBB": (S.RBBB,),
    "RBBB": (S.RBBB,),
    "CLBBB": (S.LBBB,),
    "LBBB": (S.LBBB,),
    "BBB": (S.RBBB, S.LBBB),
    "NSIVCB": (S.WIDE_QRS,),
    "IVCD": (S.WIDE_QRS,),
    "WQRS": (S.RBBB, S.LBBB, S.WIDE_QRS),
    "LVOLT": (S.LOW_VOLTAGE,),
    "LQRSV": (S.LOW_VOLTAGE,),
    "LAD": (S.LEFT_AXIS_DEVIATION,),
    "RAD": (S.RIGHT_AXIS_DEVIATION,),
    "LQT": (S.QTC_PROLONGED,),
}
# Network labels that may only be called positive when a rule agrees (ST elevation from a network
# alone made normal ECGs critical): code → the statement that must be present.
GATED: dict[str, S] = {"STE": S.ST_ELEVATION}
# Network labels that a statement rules out: a "normal ECG" cannot be called beside AF, a bundle branch
# block, a paced rhythm or STEMI criteria (milder statements, e.g. sinus bradycardia, LVH by voltage in
# the young, are compatible with PTB-XL's NORM).
CONTRADICTED_BY: dict[str, frozenset[S]] = {
    "NORM": frozenset(
        {
            S.ATRIAL_FIBRILLATION,
            S.AF_RAPID_RESPONSE,
            S.PACED_RHYTHM,
            S.RBBB,
            S.LBBB,
            S.WIDE_QRS,
            S.ST_ELEVATION,
            S.EXTREME_AXIS,
        }
    ),
}

IRREGULAR_RR = 0.08  # median |ΔRR| / median RR above which the RR sequence is irregular (sinus ≈ 0.02)
P_CONSISTENT = 0.6  # median beat-to-median (detrended) P-wave correlation for a consistent P wave
WIDE_QRS_MS = 120
PACED_SPIKES = 0.5  # pacemaker spikes before at least half the beats (with a wide QRS): paced
CONTIGUOUS = [
    ("aVL", "I"),
    ("I", "V6"),
    ("II", "aVF"),
    ("aVF", "III"),
    ("II", "III"),
    ("V1", "V2"),
    ("V2", "V3"),
    ("V3", "V4"),
    ("V4", "V5"),
    ("V5", "V6"),
]


@dataclass
class Patient:
    sex: str | None = None  # "M" / "F"
    age: float | None = None


def _stmt(code: S, evidence: dict[str, Any], network: dict[str, float] | None = None) -> Statement:
    source = "rule"
    if network:
        evidence = {**evidence, "network_probability": network}
        source = "rule+network"
    return Statement(code=code.value, name=NAMES[code], evidence=evidence, source=source)


def _rhythm(v: dict[str, Any], paced: bool) -> list[tuple[S, dict[str, Any]]]:
    hr, irregular = v.get(M.HEART_RATE), v.get(M.RR_SUCCESSIVE_IRREGULARITY)
    p_cons, pr, p_axis = v.get(M.P_WAVE_CONSISTENCY), v.get(M.PR_INTERVAL), v.get(M.P_AXIS)
    if hr is None:
        return []
    base = {M.HEART_RATE: hr, M.RR_SUCCESSIVE_IRREGULARITY: irregular, M.P_WAVE_CONSISTENCY: p_cons}
    if paced:
        return [
            (
                S.PACED_RHYTHM,
                {
                    **base,
                    M.QRS_DURATION: v.get(M.QRS_DURATION),
                    M.PACING_SPIKE_FRACTION: v.get(M.PACING_SPIKE_FRACTION),
                },
            )
        ]
    p_ok = p_cons is not None and p_cons >= P_CONSISTENT and pr is not None and 80 <= pr <= 400
    sinus_axis = p_axis is not None and -30 <= p_axis <= 105
    is_irregular = irregular is not None and irregular >= IRREGULAR_RR
    if p_ok and sinus_axis:
        code = S.SINUS_TACHYCARDIA if hr > 100 else S.SINUS_BRADYCARDIA if hr < 60 else S.SINUS_RHYTHM
        return [(code, {**base, M.P_AXIS: p_axis, M.PR_INTERVAL: pr})]
    if is_irregular and not p_ok:
        out = [(S.ATRIAL_FIBRILLATION, base)]
        if hr > 110:
            out.append((S.AF_RAPID_RESPONSE, base))
        return out
    return [(S.RHYTHM_UNDETERMINED, {**base, M.P_AXIS: p_axis})]


def _conduction(v: dict[str, Any], lead: dict[str, dict[str, Any]], sinus: bool) -> list[tuple[S, dict]]:
    out: list[tuple[S, dict]] = []
    pr, qrs = v.get(M.PR_INTERVAL), v.get(M.QRS_DURATION)
    if sinus and pr is not None and pr > 200:
        out.append((S.FIRST_DEGREE_AV_BLOCK, {M.PR_INTERVAL: pr}))
    if qrs is not None and qrs >= WIDE_QRS_MS and lead:
        v1, v6, i = lead["V1"], lead["V6"], lead["I"]
        # V1: the deepest negative deflection (Q or S: a QS complex has no R before it) against the R.
        r_v1 = v1.get(L.R_AMPLITUDE) or 0.0
        neg_v1 = -min(v1.get(L.Q_AMPLITUDE) or 0.0, v1.get(L.S_AMPLITUDE) or 0.0)
        s_v6, s_i = -(v6.get(L.S_AMPLITUDE) or 0.0), -(i.get(L.S_AMPLITUDE) or 0.0)
        q_v6, r_v6 = -(v6.get(L.Q_AMPLITUDE) or 0.0), v6.get(L.R_AMPLITUDE) or 0.0
        evidence = {
            M.QRS_DURATION: qrs,
            "R_V1_mv": r_v1,
            "negative_V1_mv": neg_v1,
            "R_V6_mv": r_v6,
            "S_V6_mv": s_v6,
            "S_I_mv": s_i,
            "Q_V6_mv": q_v6,
        }
        if r_v1 > neg_v1 and max(s_v6, s_i) >= 0.1:
            out.append((S.RBBB, evidence))
        elif neg_v1 > r_v1 and r_v6 > s_v6 and q_v6 < 0.1:
            out.append((S.LBBB, evidence))
        else:
            out.append((S.WIDE_QRS, evidence))
    return out


def _st_elevation(v: dict[str, Any], lead: dict[str, dict[str, Any]], patient: Patient) -> tuple[S, dict] | None:
    qrs = v.get(M.QRS_DURATION)
    if not lead or qrs is None or qrs >= WIDE_QRS_MS:
        return None  # ST in a wide QRS (LBBB, paced) needs Sgarbossa-type criteria, not these
    female = (patient.sex or "").upper().startswith("F")
    young_man = not female and patient.age is not None and patient.age < 40
    v23 = 0.15 if female else 0.25 if young_man else 0.2

    def limit(name: str) -> float:
        return v23 if name in ("V2", "V3") else 0.1

    st = {name: values.get(L.ST_J) for name, values in lead.items()}
    st60 = {name: values.get(L.ST_J60) for name, values in lead.items()}
    # Elevated at the J point, and the ST segment still at least half as high 60 ms later (a J point
    # placed on the R wave's downstroke alone is not an ST elevation).
    elevated = {
        name
        for name, value in st.items()
        if value is not None and value >= limit(name) and (st60[name] or 0.0) >= 0.5 * limit(name)
    }
    pairs = [pair for pair in CONTIGUOUS if pair[0] in elevated and pair[1] in elevated]
    if not pairs:
        return None
    leads = sorted({name for pair in pairs for name in pair}, key=list(lead).index)
    return S.ST_ELEVATION, {
        "leads": leads,
        L.ST_J: {name: st[name] for name in leads},
        L.ST_J60: {name: st60[name] for name in leads},
        "limit_v2_v3_mv": v23,
        "limit_other_mv": 0.1,
    }


def _morphology(v: dict[str, Any], patient: Patient) -> list[tuple[S, dict]]:
    out: list[tuple[S, dict]] = []
    female = (patient.sex or "").upper().startswith("F")
    qtc, qrs = v.get(M.QTC_BAZETT), v.get(M.QRS_DURATION)
    qtc_limit = 460 if female or patient.sex is None else 450
    if qtc is not None and qtc > qtc_limit:
        out.append(
            (
                S.QTC_PROLONGED,
                {
                    M.QTC_BAZETT: qtc,
                    "limit_ms": qtc_limit,
                    M.QRS_DURATION: qrs,
                    M.QTC_FRIDERICIA: v.get(M.QTC_FRIDERICIA),
                },
            )
        )
    axis = v.get(M.QRS_AXIS)
    if axis is not None:
        if -90 <= axis < -30:
            out.append((S.LEFT_AXIS_DEVIATION, {M.QRS_AXIS: axis}))
        elif 90 < axis <= 180:
            out.append((S.RIGHT_AXIS_DEVIATION, {M.QRS_AXIS: axis}))
        elif -180 <= axis < -90:
            out.append((S.EXTREME_AXIS, {M.QRS_AXIS: axis}))
    limb, chest = v.get(M.QRS_LIMB_MAX), v.get(M.QRS_PRECORDIAL_MAX)
    if (limb is not None and limb < 0.5) or (chest is not None and chest < 1.0):
        out.append((S.LOW_VOLTAGE, {M.QRS_LIMB_MAX: limb, M.QRS_PRECORDIAL_MAX: chest}))
    sokolow, cornell = v.get(M.SOKOLOW_LYON), v.get(M.CORNELL)
    cornell_limit = 2.0 if female else 2.8
    if (qrs is None or qrs < WIDE_QRS_MS) and (
        (sokolow is not None and sokolow >= 3.5) or (cornell is not None and cornell > cornell_limit)
    ):
        out.append((S.LVH_VOLTAGE, {M.SOKOLOW_LYON: sokolow, M.CORNELL: cornell, "cornell_limit_mv": cornell_limit}))
    return out


def interpret(
    m: EcgMeasurements, probabilities: dict[str, float], thresholds: dict[str, float], patient: Patient | None = None
) -> list[Statement]:
    """The statements of one acceptable-quality ECG, each with its evidence."""
    patient = patient or Patient()
    v, lead = m.values, m.leads
    wide = (v.get(M.QRS_DURATION) or 0) >= WIDE_QRS_MS
    spikes = (v.get(M.PACING_SPIKE_FRACTION) or 0.0) >= PACED_SPIKES
    paced = wide and (spikes or probabilities.get("PACE", 0.0) >= thresholds.get("PACE", 1.1))
    made = _rhythm(v, paced)
    sinus = any(code in (S.SINUS_RHYTHM, S.SINUS_BRADYCARDIA, S.SINUS_TACHYCARDIA) for code, _ in made)
    if not paced:
        made += _conduction(v, lead, sinus)
        ste = _st_elevation(v, lead, patient)
        if ste:
            made.append(ste)
    made += _morphology(v, patient)
    network_for: dict[S, dict[str, float]] = {}
    for label, codes in {**DEFINITIONAL, **{k: (s,) for k, s in GATED.items()}}.items():
        if label in probabilities:
            for code in codes:
                network_for.setdefault(code, {})[label] = round(float(probabilities[label]), 4)
    return [_stmt(code, evidence, network_for.get(code)) for code, evidence in made]


def _ruled_out(code: str, made: set[str]) -> bool:
    """A gated label whose rule did not fire, or a label a made statement contradicts."""
    if code in GATED and GATED[code].value not in made:
        return True
    return bool(made & {statement.value for statement in CONTRADICTED_BY.get(code, ())})


def reconcile(findings: list[Finding], statements: list[Statement]) -> list[Finding]:
    """Findings re-stated from their definitions: a definitional label is positive exactly when its
    statement is made (probability 1 or 0, source "rule", the network's number kept beside it); a
    gated label (ST elevation) is positive only when the network says so *and* the rule agrees; a label a
    statement rules out (a normal ECG beside LBBB) is not positive."""
    made = {s.code for s in statements}
    out = []
    for f in findings:
        codes = DEFINITIONAL.get(f.code)
        if codes is not None:
            positive = any(code.value in made for code in codes)
            f = f.model_copy(
                update={
                    "probability": 1.0 if positive else 0.0,
                    "positive": positive,
                    "source": "rule",
                    "network_probability": f.probability,
                }
            )
        elif f.positive and _ruled_out(f.code, made):
            f = f.model_copy(update={"positive": False, "source": "rule+network", "network_probability": f.probability})
        out.append(f)
    return out
