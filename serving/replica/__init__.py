"""Replica: the model deployments (``deployment``), their priority batcher (``batching``), following
registry promotions (``reload``), the KServe v2 protocol (``kserve``) and Triton (``triton``)."""
