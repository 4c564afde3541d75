"""``TollgateModel``: the one ``kserve.Model`` that serves a registered Tollgate version.

The same class runs in the cluster's serving image (loading KServe's ``/mnt/models``)
and locally (``tollgate serve``, infra-validation, tests). It answers v1 REST, Open
Inference Protocol v2 REST and v2 gRPC; every answer carries the predicted class, the
positive-class probability (binary) or every class's probability (multiclass, in the
class order of ``input_schema.json``) and the model version.

What it serves is ``model.onnx``, run by onnxruntime with one intra-op thread, after the
input schema has validated the request and made the graph's inputs
(:meth:`InputSchema.model_feeds`). It never unpickles: ``model.joblib`` beside it is a
training artifact and is not read.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from kserve import Model
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

from tollgate.config import ServingConfig
from tollgate.records import ModelInputs, RecordError, VersionMetadata
from tollgate.registry import METADATA_FILE, ONNX_FILE, SCHEMA_FILE
from tollgate.serving.runtime import GraphError, OnnxModel
from tollgate.serving.schema import InputSchema
from tollgate.steps.labels import decision_threshold, positive_decisions

logger = logging.getLogger("tollgate.serving")

CLASS_OUTPUT = "predicted_class"
PROBABILITY_OUTPUT = "probability"
PROBABILITIES_OUTPUT = "probabilities"  # multiclass: [n, k], columns in the model's class order
DEFAULT_MAX_BATCH: int = ServingConfig.model_fields["max_batch"].default  # serving.max_batch's default


class ModelLoadError(RuntimeError):
    """A version directory cannot be served; the message says which file and why."""


class _Batch:
    """Validated request columns plus how the answer must be shaped."""

    __slots__ = ("columns", "rows", "request")

    def __init__(self, columns: dict[str, Any], rows: int, request: InferRequest | None):
        self.columns = columns
        self.rows = rows
        self.request = request


class TollgateModel(Model):
    """Serve one registered version directory (``model.onnx``, ``input_schema.json``, ``metadata.json``)."""

    def __init__(self, name: str, model_dir: str | Path, max_batch: int = DEFAULT_MAX_BATCH,
                 unknown_columns: str = "reject"):
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.max_batch = max_batch
        self.unknown_columns = unknown_columns
        self.version = ""
        self.path_description = ""

    # -- loading --------------------------------------------------------------------------

    def load(self) -> bool:
        """Read the schema, the metadata and the graph; check the graph takes the schema's inputs; mark ready."""
        missing = [name for name in (ONNX_FILE, SCHEMA_FILE) if not (self.model_dir / name).is_file()]
        if missing:
            raise ModelLoadError(f"{self.model_dir} is not a Tollgate model version: missing {', '.join(missing)}")
        try:
            schema = json.loads((self.model_dir / SCHEMA_FILE).read_text())
            self.schema = InputSchema.from_dict(schema, self.unknown_columns)
        except (ValueError, OSError) as exc:
            raise ModelLoadError(f"{self.model_dir / SCHEMA_FILE}: {exc}") from exc
        metadata_path = self.model_dir / METADATA_FILE
        try:
            self.metadata = VersionMetadata.from_json(metadata_path.read_text()) if metadata_path.is_file() \
                else VersionMetadata()
        except (RecordError, OSError) as exc:
            raise ModelLoadError(f"{metadata_path}: {exc}") from exc
        self.version = "" if self.metadata.version is None else str(self.metadata.version)
        try:
            self.graph = OnnxModel.from_file(self.model_dir / ONNX_FILE, schema, threads=1)
        except GraphError as exc:
            raise ModelLoadError(f"{self.model_dir / ONNX_FILE}: {exc}") from exc
        # A multiclass version records its class order in the input schema (the probability columns' order).
        inputs = ModelInputs.from_dict(schema)
        self.multiclass = inputs.multiclass
        if self.multiclass:
            labels = list(inputs.classes or [])
            if len(labels) < 2:
                raise ModelLoadError(f"{self.model_dir / SCHEMA_FILE}: a multiclass schema must list its classes")
        else:
            labels = list(self.metadata.binary_labels)
        # The threshold the version was evaluated and gated with (0.5 for a version that records none).
        self.decision_threshold = decision_threshold(schema)
        # Output tensors are typed once here: INT64 classes for integer labels, BYTES otherwise.
        self._integer_labels = all(isinstance(v, (int, float)) and not isinstance(v, bool) and float(v).is_integer()
                                   for v in labels)
        self.labels = np.array([int(v) for v in labels] if self._integer_labels else [str(v) for v in labels],
                               dtype=np.int64 if self._integer_labels else object)
        self._class_datatype = "INT64" if self._integer_labels else "BYTES"
        self.class_order = [int(v) for v in labels] if self._integer_labels else [str(v) for v in labels]
        self._class_keys = [str(v) for v in self.class_order]
        if self.multiclass:
            # gRPC model metadata has no place for it, so every answer's probabilities tensor names its columns.
            self._probabilities_parameters = {"classes": orjson.dumps(self.class_order).decode()}
        self._version_parameter = {"model_version": self.version}
        self.path_description = f"onnxruntime {_onnxruntime_version()}, 1 intra-op thread"
        logger.info("loaded %s v%s from %s; prediction path: %s", self.name, self.version, self.model_dir,
                    self.path_description)
        self.ready = True
        return self.ready

    # -- metadata -------------------------------------------------------------------------

    def get_input_types(self) -> list[dict[str, Any]]:
        """One input per column, in schema order (the 2-D alternative is documented)."""
        return [{"name": c.name, "datatype": c.datatype, "shape": [-1]} for c in self.schema.columns]

    def get_output_types(self) -> list[dict[str, Any]]:
        if self.multiclass:
            return [{"name": CLASS_OUTPUT, "datatype": self._class_datatype, "shape": [-1]},
                    {"name": PROBABILITIES_OUTPUT, "datatype": "FP64", "shape": [-1, len(self.class_order)]}]
        return [{"name": CLASS_OUTPUT, "datatype": self._class_datatype, "shape": [-1]},
                {"name": PROBABILITY_OUTPUT, "datatype": "FP64", "shape": [-1]}]

    def metadata_parameters(self) -> dict[str, Any] | None:
        """What REST ``GET /v2/models/<name>`` adds for a multiclass model: the task and the class order."""
        return {"task": "multiclass", "classes": self.class_order} if self.multiclass else None

    # -- request path ---------------------------------------------------------------------

    def validate(self, payload: Any) -> Any:
        # kserve's generic check assumes a dict or InferRequest; preprocess already validated.
        return payload

    def preprocess(self, payload: Any, headers: dict[str, str] | None = None) -> _Batch:
        """Decode and enforce the schema; raises ``InvalidInput`` (400 / INVALID_ARGUMENT)."""
        if isinstance(payload, InferRequest):
            inputs = payload.inputs
            if not inputs:
                raise InvalidInput("'inputs' is empty; send one input per column or one 2-D input")
            columns = self.schema.columns_from_tensors(inputs)
            return self._batch(columns, payload)
        if isinstance(payload, (bytes, bytearray)):
            # A JSON body sent without a JSON Content-Type (curl -d does that) reaches us undecoded.
            try:
                payload = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise InvalidInput("the request body must be a JSON object like {\"instances\": [...]} "
                               f"(got {type(payload).__name__}); set Content-Type: application/json")
        instances = payload.get("instances", payload.get("inputs"))
        if instances is None:
            raise InvalidInput("the request has no 'instances': send {\"instances\": [{column: value, ...}, ...]}")
        if type(instances) is not list:
            raise InvalidInput(f"'instances' must be a list, got {type(instances).__name__}")
        self._check_rows(len(instances))
        return self._batch(self.schema.columns_from_instances(instances), None)

    def _check_rows(self, rows: int) -> None:
        if rows == 0:
            raise InvalidInput("empty batch: send at least one row")
        if rows > self.max_batch:
            raise InvalidInput(f"batch of {rows} rows is over the limit of {self.max_batch} "
                               "(serving.max_batch); split it into smaller requests")

    def _batch(self, columns: dict[str, Any], request: InferRequest | None) -> _Batch:
        rows = len(next(iter(columns.values()))) if columns else 0
        self._check_rows(rows)
        return _Batch(columns, rows, request)

    def predict_columns(self, columns: dict[str, Any], rows: int) -> np.ndarray:
        """Class probabilities ``[rows, 2]`` (float32, as the graph computes them) for validated columns."""
        return self.graph.run(self.schema.model_feeds(columns))

    def predict(self, batch: _Batch, headers: dict[str, str] | None = None) -> Any:
        proba = self.predict_columns(batch.columns, batch.rows)
        if self.multiclass:
            return self._predict_multiclass(batch, proba)
        # float32 from the graph; widened exactly to the FP64 the protocol answers with.
        positive = proba[:, 1].astype(np.float64)
        # The version's decision rule: positive when P(positive) >= its decision_threshold.
        classes = self.labels[positive_decisions(positive, self.decision_threshold).astype(np.intp)]
        if batch.request is None:
            class_list = classes.tolist()
            return {
                "predictions": [{CLASS_OUTPUT: c, PROBABILITY_OUTPUT: p} for c, p in zip(class_list, positive.tolist(), strict=True)],
                "model_name": self.name,
                "model_version": self.version,
            }
        rows = batch.rows
        class_output = InferOutput(CLASS_OUTPUT, [rows], self._class_datatype,
                                   data=classes.tolist() if self._integer_labels else [str(c) for c in classes])
        probability_output = InferOutput(PROBABILITY_OUTPUT, [rows], "FP64", data=positive.tolist())
        request = batch.request
        return InferResponse(response_id=request.id or "", model_name=self.name, model_version=self.version,
                             infer_outputs=[class_output, probability_output], from_grpc=request.from_grpc,
                             # kserve's REST client drops model_version when decoding; parameters survive.
                             parameters=self._version_parameter,
                             requested_outputs=None if request.from_grpc else request.request_outputs)


    def _predict_multiclass(self, batch: _Batch, proba: np.ndarray) -> Any:
        """``predicted_class`` (the argmax, ties to the first class in class order) and every class's probability."""
        probabilities = proba.astype(np.float64)
        classes = self.labels[proba.argmax(axis=1)]
        class_list = classes.tolist() if self._integer_labels else [str(c) for c in classes]
        if batch.request is None:
            keys = self._class_keys
            return {
                "predictions": [{CLASS_OUTPUT: c, PROBABILITIES_OUTPUT: dict(zip(keys, row, strict=True))}
                                for c, row in zip(class_list, probabilities.tolist(), strict=True)],
                "model_name": self.name,
                "model_version": self.version,
            }
        rows = batch.rows
        class_output = InferOutput(CLASS_OUTPUT, [rows], self._class_datatype, data=class_list)
        probabilities_output = InferOutput(PROBABILITIES_OUTPUT, [rows, probabilities.shape[1]], "FP64",
                                           data=probabilities.reshape(-1).tolist(),
                                           parameters=self._probabilities_parameters)
        request = batch.request
        return InferResponse(response_id=request.id or "", model_name=self.name, model_version=self.version,
                             infer_outputs=[class_output, probabilities_output], from_grpc=request.from_grpc,
                             parameters=self._version_parameter,
                             requested_outputs=None if request.from_grpc else request.request_outputs)


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
