"""Network definitions, model cards, export and inference backends.

Nothing here imports serving/ or training/.
"""
