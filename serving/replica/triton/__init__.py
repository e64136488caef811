"""Triton Inference Server beside preread: a model repository written from the registry
(``repository``), the tritonserver process (``server``), and the Python-backend model that runs a
registered ONNX export with preread's own ONNX Runtime backend (``python_model``).

The client side (a model deployment reading through Triton) is ``models.backends.TritonBackend``;
``backend: triton`` in configs/serving.yaml picks it.
"""
