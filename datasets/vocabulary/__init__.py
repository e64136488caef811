"""The project's one shared vocabulary: triage levels, study statuses, SOP classes, age bands, label
sets and their code mappings, quality verdict reasons.

A leaf: it imports nothing of ours (the import contract in CI checks it), so datasets/, models/,
training/, evaluation/ and serving/ can all use it. One definition per concept, with a docstring per
member, in the manner of highdicom's ``highdicom/sr/enum.py``.
"""

from datasets.vocabulary.levels import LEVEL_RANK, TriageLevel
from datasets.vocabulary.quality import QualityReason

__all__ = ["LEVEL_RANK", "QualityReason", "TriageLevel"]
