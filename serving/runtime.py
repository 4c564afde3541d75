"""The served graph in-process: ``model.onnx`` bytes run by onnxruntime.

One class for every path that scores a model after training: the server
(:class:`tollgate.serving.model.TollgateModel`), evaluate (candidate and champion) and
infra-validation. None of them unpickles anything: an ONNX file is data, not code.

The session runs with one intra-op and one inter-op thread: requests are small and
run one at a time on the server's event loop, where thread pools only spin and fight
the loop for the cores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tollgate.records import ModelInputs

PROBABILITIES_OUTPUT = "probabilities"  # skl2onnx's name for the [n, 2] tensor with zipmap off
ONNX_TYPES = {"float32": "tensor(float)", "string": "tensor(string)"}


class GraphError(ValueError):
    """The ONNX bytes are not a graph this schema can feed; the message says what differs."""


def session_options(threads: int = 1) -> Any:
    """onnxruntime options: ``threads`` intra-op threads, one inter-op, sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # warnings about unused initializers are noise here
    return options


class OnnxModel:
    """An onnxruntime session over ``model.onnx`` bytes, checked against the input schema."""

    def __init__(self, onnx_bytes: bytes, schema: dict[str, Any], threads: int = 1):
        import onnxruntime as ort

        try:
            self.session = ort.InferenceSession(onnx_bytes, sess_options=session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad bytes
            raise GraphError(f"onnxruntime cannot load the graph: {type(exc).__name__}: {exc}") from exc
        self.schema = schema
        check_graph_inputs(self.session, schema)
        outputs = [o.name for o in self.session.get_outputs()]
        if PROBABILITIES_OUTPUT not in outputs:
            raise GraphError(f"the graph has no {PROBABILITIES_OUTPUT!r} output (outputs: {outputs}); "
                             "it must be exported with zipmap disabled")
        self._outputs = [PROBABILITIES_OUTPUT]

    @classmethod
    def from_file(cls, path: str | Path, schema: dict[str, Any], threads: int = 1) -> OnnxModel:
        """Load ``model.onnx`` from disk."""
        return cls(Path(path).read_bytes(), schema, threads)

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Class probabilities ``[n, 2]`` (float32) for ready-made feeds."""
        return self.session.run(self._outputs, feeds)[0]

    def predict_proba(self, frame: Any) -> np.ndarray:
        """Class probabilities for a pandas DataFrame holding (at least) the schema's columns."""
        from tollgate.serving.schema import feeds_from_inputs, model_inputs

        return self.run(feeds_from_inputs(model_inputs(frame, self.schema)))


def check_graph_inputs(session: Any, schema: dict[str, Any]) -> None:
    """The graph must take exactly one ``[n, 1]`` input per schema column, of the contract's type."""
    from tollgate.serving.schema import MODEL_INPUT_TYPES

    expected = {c.name: ONNX_TYPES[MODEL_INPUT_TYPES["numeric" if c.role == "numeric" else "categorical"]]
                for c in ModelInputs.from_dict(schema).columns}
    got = {i.name: i.type for i in session.get_inputs()}
    if set(got) != set(expected):
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        raise GraphError(f"the graph's inputs do not match input_schema.json: missing {missing}, unexpected {extra}")
    wrong = {name: got[name] for name in expected if got[name] != expected[name]}
    if wrong:
        raise GraphError(f"the graph's input types do not match the contract: {wrong} "
                         f"(numeric columns are {ONNX_TYPES['float32']}, categorical {ONNX_TYPES['string']})")
