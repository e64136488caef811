"""The Triton backend: a network served by a Triton Inference Server (or any KServe v2 server)
reached with tritonclient over HTTP or gRPC; ``models.backends.load_backend`` opens it for a model
directory with ``kind="triton"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.card import ModelCard
from models.inference import check_batch, sigmoid

TRITON_OPTIONS = ("url", "model_name", "model_version", "protocol", "timeout_s", "headers")


class TritonUnavailable(RuntimeError):
    """The Triton server cannot be reached, or does not serve the model version asked for."""


class TritonBackend:
    """A network served by a Triton Inference Server — or any KServe v2 server, preread's own
    included — called with tritonclient over HTTP or gRPC, tensors in binary.

    The server's model takes the preprocessed batch (``input``) and returns ``probabilities``
    (a preread-written Triton repository, see serving/replica/triton) or ``logits`` (an ONNX model served
    by Triton's onnxruntime backend), which are turned into probabilities here.
    ``model_version`` defaults to the registry version whose card the caller reads with, so labels
    and thresholds always belong to the network that answers.
    """

    name = "triton"

    def __init__(
        self,
        url: str,
        model_name: str,
        model_version: str = "",
        protocol: str = "http",
        card: ModelCard | None = None,
        timeout_s: float = 30.0,
        headers: dict[str, str] | None = None,
    ):
        if protocol not in ("http", "grpc"):
            raise ValueError(f"Triton protocol must be 'http' or 'grpc', got {protocol!r}")
        self.url, self.model_name, self.model_version = url, model_name, str(model_version or "")
        self.protocol, self.card, self.timeout_s = protocol, card, float(timeout_s)
        self.headers = dict(headers or {})
        self.device = f"triton:{protocol}://{url}"
        self.where = f"Triton at {url} ({protocol})"
        if protocol == "http":
            import tritonclient.http as client_module  # noqa: PLC0415 - optional; loaded only for a Triton backend

            self.client = client_module.InferenceServerClient(
                url=url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
            )
        else:
            import tritonclient.grpc as client_module  # noqa: PLC0415 - optional; loaded only for a Triton backend

            self.client = client_module.InferenceServerClient(url=url)
        self._module = client_module
        metadata = self._describe()
        model_input = metadata["inputs"][0]
        self.input_name, self.input_datatype = model_input["name"], model_input["datatype"]
        self.input_shape = [int(d) if int(d) >= 0 else None for d in model_input["shape"]]
        self.input_shape[0] = None  # the batch axis
        outputs = [o["name"] for o in metadata["outputs"]]
        self.output_name = "probabilities" if "probabilities" in outputs else outputs[0]
        self.outputs_logits = self.output_name != "probabilities"
        if card is not None and list(card.input.shape)[1:] != self.input_shape[1:]:
            raise TritonUnavailable(
                f"{self.where}: model {model_name} takes {model_input['shape']}, the card says {card.input.shape}"
            )

    def _call(self, what: str, fn, *args, **kwargs):
        """Run a client call; a connection problem becomes TritonUnavailable naming the server."""
        from tritonclient.utils import InferenceServerException  # noqa: PLC0415 - optional; loaded only for a Triton backend

        try:
            return fn(*args, **kwargs)
        except InferenceServerException as exc:
            status = str(exc.status() or "")
            if "UNAVAILABLE" in status or "unavailable" in exc.message().lower() or "connect" in exc.message().lower():
                raise TritonUnavailable(f"{self.where} is unreachable ({what}): {exc.message()}") from exc
            raise
        except (OSError, ConnectionError) as exc:
            raise TritonUnavailable(f"{self.where} is unreachable ({what}): {exc}") from exc

    def _describe(self) -> dict:
        live = self._call("server live", self.client.is_server_live, headers=self.headers)
        if not live:
            raise TritonUnavailable(f"{self.where} answers but is not live")
        ready = self._call(
            "model ready", self.client.is_model_ready, self.model_name, self.model_version, headers=self.headers
        )
        if not ready:
            raise TritonUnavailable(
                f"{self.where} does not serve model {self.model_name!r} version "
                f"{self.model_version or '(any)'} (not ready)"
            )
        if self.protocol == "http":
            return self._call(
                "model metadata",
                self.client.get_model_metadata,
                self.model_name,
                self.model_version,
                headers=self.headers,
            )
        reply = self._call(
            "model metadata",
            self.client.get_model_metadata,
            self.model_name,
            self.model_version,
            headers=self.headers,
            as_json=True,
        )
        for tensor in reply.get("inputs", []) + reply.get("outputs", []):
            tensor["shape"] = [int(d) for d in tensor.get("shape", [])]
        return reply

    def predict(self, batch: np.ndarray, priority: int = 0) -> np.ndarray:
        """Probabilities for ``batch``; ``priority`` is Triton's (1 highest, 0 the model's default)."""
        batch = check_batch(batch, self.input_shape)
        tensor = self._module.InferInput(self.input_name, list(batch.shape), "FP32")
        if self.protocol == "http":
            tensor.set_data_from_numpy(batch, binary_data=True)
            wanted = self._module.InferRequestedOutput(self.output_name, binary_data=True)
        else:
            tensor.set_data_from_numpy(batch)
            wanted = self._module.InferRequestedOutput(self.output_name)
        result = self._call(
            "infer",
            self.client.infer,
            self.model_name,
            [tensor],
            model_version=self.model_version,
            outputs=[wanted],
            priority=int(priority),
            headers=self.headers,
        )
        values = result.as_numpy(self.output_name)
        return sigmoid(values) if self.outputs_logits else np.asarray(values, dtype=np.float32)

    def close(self) -> None:
        self.client.close()


def triton_for_model_dir(model_dir: Path, opts: dict) -> TritonBackend:
    """The Triton backend reading with the card of ``model_dir``: ``url`` required, ``model_name``
    defaults to the card's name and ``model_version`` to the directory's registry version."""
    card = ModelCard.load(model_dir)
    triton = {key: opts[key] for key in TRITON_OPTIONS if opts.get(key) is not None}
    if "url" not in triton:
        raise ValueError("the triton backend needs the server's url (models.<name>.triton.url)")
    triton.setdefault("model_name", card.name)
    # A file-registry version dir is named "3"; an MLflow cache copy "3-<key>" (models/registry_mlflow.py).
    version = model_dir.name.split("-", 1)[0]
    triton.setdefault("model_version", version if version.isdigit() else "")
    return TritonBackend(card=card, **triton)
