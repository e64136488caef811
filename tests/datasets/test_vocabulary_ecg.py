"""The ECG label vocabulary: PTB-XL superclasses and SCP statements both ways, CinC 2021 scored classes."""

from __future__ import annotations

import ast
import inspect

import pandas as pd
import pytest

from datasets.sources.ptbxl import Statements, _scp_codes
from datasets.vocabulary import ecg as vocabulary
from datasets.vocabulary.ecg import (
    CINC2021_SCORED,
    PTBXL_DIAGNOSTIC_STATEMENTS,
    SUPERCLASS_CODES,
    PtbxlSuperclass,
    cinc_equivalent,
    snomed_superclasses,
    statements_of,
    superclasses_of,
)
from tests.conftest import shared_data_dir

PTBXL = shared_data_dir() / "ecg" / "ptbxl"


def test_superclass_codes_are_exactly_the_five():
    assert SUPERCLASS_CODES == ("NORM", "MI", "STTC", "CD", "HYP")
    for member in PtbxlSuperclass:
        assert member.__doc__ and member.display_name
    assert PtbxlSuperclass("MI").display_name == "Myocardial infarction"


def test_statement_table_is_scp_statements_csv():
    table = pd.read_csv(PTBXL / "scp_statements.csv", index_col=0)
    diagnostic = table[table["diagnostic"] == 1.0]
    assert len(PTBXL_DIAGNOSTIC_STATEMENTS) == len(diagnostic) == 44
    for statement in PTBXL_DIAGNOSTIC_STATEMENTS:
        assert diagnostic.loc[statement.code, "diagnostic_class"] == statement.superclass.value
        assert diagnostic.loc[statement.code, "diagnostic_subclass"] == statement.subclass


def test_superclasses_of_agrees_with_the_benchmark_aggregation_on_every_record():
    db = pd.read_csv(PTBXL / "ptbxl_database.csv")
    lookup = Statements(pd.read_csv(PTBXL / "scp_statements.csv", index_col=0))
    for ecg_id, value in zip(db["ecg_id"], db["scp_codes"]):
        codes = _scp_codes(value, ecg_id, PTBXL)
        assert {s.value for s in superclasses_of(codes)} == lookup.aggregate(codes, "superdiagnostic"), ecg_id
        strict = {s.value for s in superclasses_of(codes, min_likelihood=100)}
        assert strict == lookup.aggregate(codes, "superdiagnostic", min_likelihood=100), ecg_id


def test_both_ways():
    for code in SUPERCLASS_CODES:
        members = statements_of(code)
        assert members and superclasses_of(list(members)) == {PtbxlSuperclass(code)}
    assert set().union(*(statements_of(c) for c in SUPERCLASS_CODES)) == {s.code for s in PTBXL_DIAGNOSTIC_STATEMENTS}
    assert "CLBBB" in statements_of("CD") and "IMI" in statements_of(PtbxlSuperclass.MI)
    assert superclasses_of({"SR": 0.0, "AFIB": 0.0}) == set()  # rhythm statements: no superclass


def test_cinc_scored_classes():
    codes = [c.snomed for c in CINC2021_SCORED]
    assert len(codes) == len(set(codes)) == 30
    assert cinc_equivalent("713427006") == "59118001" and cinc_equivalent("59118001") == "713427006"
    assert cinc_equivalent("284470004") == "63593006" and cinc_equivalent("426783006") is None
    for code in ("733534002", "713427006", "284470004", "427172004"):
        assert cinc_equivalent(cinc_equivalent(code)) == code and cinc_equivalent(code) in codes


@pytest.mark.parametrize(
    "dx, expected, norm_known",
    [
        (["426783006"], {"NORM"}, True),  # sinus rhythm only: normal
        (["59118001", "426177001"], {"CD"}, True),  # RBBB: conduction disturbance, not normal
        (["164873001"], {"HYP"}, True),
        (["428750005", "111975006"], {"STTC"}, True),
        (["426783006", "39732003"], set(), False),  # sinus rhythm + axis deviation: unknown
        (["427084000"], set(), False),  # sinus tachycardia alone: rhythm, not a superclass
    ],
)
def test_snomed_superclasses(dx, expected, norm_known):
    found, known = snomed_superclasses(dx)
    assert {s.value for s in found} == expected and known is norm_known


def test_the_leaf_imports_nothing_of_ours():
    tree = ast.parse(inspect.getsource(vocabulary))
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    ours = ("datasets", "models", "training", "evaluation", "serving", "preread", "bench")
    assert not [name for name in imported if name and name.split(".")[0] in ours]
