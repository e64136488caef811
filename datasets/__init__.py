"""Readers, transforms and synthetic generators shared by training and serving.

Nothing here imports serving/ or training/: the same preprocessing runs in a notebook,
a training job and a Ray Serve replica, so a model never sees two different pipelines.
"""
