"""Triton Python-backend model: a registered ONNX export run by preread's OnnxRuntimeBackend.

Copied as ``<repository>/<model>/<version>/model.py`` by serving.replica.triton.repository; it runs inside
Triton's Python-backend stub, not in preread. Triton's dynamic batcher hands ``execute`` several
requests at once; they are concatenated into one batch, run once, and split back.

Parameters (config.pbtxt): ``project_root`` (put on sys.path so ``models`` imports — the stub
ignores PYTHONPATH), ``intra_op_threads`` (0 = ONNX Runtime's default), ``precision`` (fp32|fp16,
fp16 on GPU instances only).
"""

import json
import os
import sys

import numpy as np
import torch
import triton_python_backend_utils as pb_utils  # provided by the stub
from torch.utils.dlpack import from_dlpack

INPUT, OUTPUT = "input", "probabilities"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value.get("string_value", "") for key, value in (config.get("parameters") or {}).items()}
        root = params.get("project_root")
        if root and root not in sys.path:
            sys.path.insert(0, root)
        from models.backends import OnnxRuntimeBackend  # noqa: PLC0415 - needs project_root first

        on_gpu = args.get("model_instance_kind") == "GPU"
        threads = int(params.get("intra_op_threads") or 0)
        self.backend = OnnxRuntimeBackend(
            os.path.join(args["model_repository"], args["model_version"], "model.onnx"),
            providers=["CUDAExecutionProvider", "CPUExecutionProvider"] if on_gpu else ["CPUExecutionProvider"],
            intra_op_threads=threads or None,
            precision=params.get("precision") or "fp32",
            device_id=int(args.get("model_instance_device_id") or 0),
        )

    def execute(self, requests):
        # DLPack both ways through torch, not as_numpy()/Tensor(name, array): the stub's pybind11
        # reads numpy 1.x array descriptors and misreads numpy 2's (garbage in, empty out); and
        # numpy's own DLPack exchange with the stub leaves a stray "PyCapsule" error behind.
        arrays = [
            from_dlpack(pb_utils.get_input_tensor_by_name(request, INPUT).to_dlpack()).numpy() for request in requests
        ]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        try:
            probabilities = self.backend.predict(batch)
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the reason
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses, start = [], 0
        for array in arrays:
            part = np.ascontiguousarray(probabilities[start : start + len(array)])
            start += len(array)
            tensor = pb_utils.Tensor.from_dlpack(OUTPUT, torch.from_numpy(part))
            responses.append(pb_utils.InferenceResponse(output_tensors=[tensor]))
        return responses

    def finalize(self):
        self.backend = None
