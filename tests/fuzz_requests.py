"""Seeded generators of malformed requests for the model server, and the loops that send them.

Shared by the test suite (a bounded sample, ``tests/test_serving_fuzz.py``) and
``bench/fuzz.py`` (the full count). Every case is built from a *valid* request for the
served model (its v2 metadata and real rows), then broken in one way, so the server's
decoders and schema checks are reached, not just the JSON parser.

REST classes (``REST_CLASSES``): truncated / duplicate-key / deep JSON, wrong types,
non-finite numbers, huge bodies and batches, the binary extension with wrong sizes and
encodings, negative and mismatched shapes, wrong content types, model and version names,
v1 bodies, random byte flips. gRPC classes (``GRPC_CLASSES``): wrong datatypes, contents
of the wrong kind, raw contents of the wrong length or prefix, shapes, missing and
duplicate inputs, non-finite numbers, model and version names, undecodable bytes.

A case is judged only by the server's answer: REST < 500, gRPC neither INTERNAL nor UNKNOWN.
"""

from __future__ import annotations

import json
import math
import random
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

NON_FINITE_TEXT = ["inf", "-inf", "Infinity", "-Infinity", "1e400", "-1e400", "1e309", "INF", "+inf", "infinity"]
ODD_TEXT = ["", " ", "nan", "NaN", "-nan", "null", "None", "0x10", "1_000", "١٢", "\u0000", "é" * 3, "💥", "1e-400",
            "9" * 400, "-0", "true", "TRUE", "1,5", " 42 ", "4.2e1"]
DATATYPES = ["BOOL", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64", "FP16", "FP32", "FP64",
             "BYTES"]
BAD_DATATYPES = ["", "fp64", "INT128", "STRING", "FLOAT", "BF16", "bytes", "x" * 300, "FP64 ", "\u00e9"]


@dataclass
class RestCase:
    kind: str
    method: str
    path: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class GrpcCase:
    kind: str
    method: str
    payload: bytes


@dataclass
class Tally:
    """What the server answered, per class; ``failures`` keeps a few bad cases for the report."""

    sent: int = 0
    by_status: Counter = field(default_factory=Counter)
    failures: list[tuple[str, Any, str]] = field(default_factory=list)
    failed: int = 0

    def record(self, kind: str, status: Any, bad: bool, detail: str) -> None:
        self.sent += 1
        self.by_status[str(status)] += 1
        if bad:
            self.failed += 1
            if len(self.failures) < 20:
                self.failures.append((kind, status, detail[:300]))


# -- a valid request to break ----------------------------------------------------------------


class Baseline:
    """Valid rows and the model's inputs, as the server's v2 metadata describes them."""

    def __init__(self, model_name: str, inputs: list[dict[str, Any]], rows: list[dict[str, Any]], version: str):
        self.model_name = model_name
        self.inputs = inputs
        self.names = [i["name"] for i in inputs]
        self.datatypes = {i["name"]: i["datatype"] for i in inputs}
        self.rows = rows
        self.version = version

    def text(self, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def columns(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One BYTES tensor per column (text survives every column type and nulls)."""
        return [{"name": n, "shape": [len(rows)], "datatype": "BYTES", "data": [self.text(r[n]) for r in rows]}
                for n in self.names]

    def v2_body(self, rng: random.Random, rows: int | None = None) -> dict[str, Any]:
        count = rows if rows is not None else rng.randint(1, 4)
        return {"inputs": self.columns([rng.choice(self.rows) for _ in range(count)])}

    def v1_body(self, rng: random.Random) -> dict[str, Any]:
        return {"instances": [dict(rng.choice(self.rows)) for _ in range(rng.randint(1, 3))]}


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(9 if depth < 3 else 6)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64 + 1, 7])
    if choice == 3:
        return rng.choice([0.5, -1e308, 1e-320, 3.0, float("nan")])
    if choice == 4:
        return rng.choice(ODD_TEXT + NON_FINITE_TEXT)
    if choice == 5:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(0, 12)))
    if choice == 6:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    return {rng.choice(["name", "shape", "data", "datatype", "inputs", "x", ""]): _random_json(rng, depth + 1)
            for _ in range(rng.randrange(0, 4))}


def _bytes_tensor(values: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(v)) + v for v in values)


# -- REST -------------------------------------------------------------------------------------


def rest_cases(base: Baseline, rng: random.Random, max_batch: int) -> dict[str, Callable[[], RestCase]]:
    """Class name -> a function building one random case of that class."""
    infer = f"/v2/models/{base.model_name}/infer"
    v1 = f"/v1/models/{base.model_name}:predict"
    json_headers = {"content-type": "application/json"}

    def body_bytes() -> bytes:
        return _json(base.v2_body(rng))

    def truncated() -> RestCase:
        raw = body_bytes() if rng.random() < 0.7 else _json(base.v1_body(rng))
        cut = raw[:rng.randrange(0, len(raw))]
        return RestCase("truncated-json", "POST", infer if raw.startswith(b'{"inputs"') else v1, cut, json_headers)

    def duplicate_keys() -> RestCase:
        body = base.v2_body(rng)
        first = json.dumps(body["inputs"][0])
        text = rng.choice([
            '{"inputs": [], "inputs": ' + json.dumps(body["inputs"]) + "}",
            '{"inputs": ' + json.dumps(body["inputs"]) + ', "inputs": 5}',
            '{"inputs": [' + first[:-1] + ', "name": "zz", "name": ' + json.dumps(body["inputs"][0]["name"]) + "}]}",
            '{"inputs": [' + first[:-1] + ', "shape": [1], "shape": [-3]}]}',
            '{"instances": [{"age": 1, "age": 2}], "instances": []}',
        ])
        return RestCase("duplicate-keys", "POST", infer if "inputs" in text else v1, text.encode(), json_headers)

    def deep() -> RestCase:
        depth = rng.choice([64, 512, 1024, 1025, 5000, 50_000])
        opener, closer = rng.choice([("[", "]"), ('{"a":', "}")])
        nested = opener * depth + "1" + closer * depth
        text = rng.choice([nested, '{"inputs": ' + nested + "}",
                           '{"inputs": [{"name": "age", "shape": [1], "datatype": "INT64", "data": ' + nested + "}]}",
                           '{"instances": ' + nested + "}"])
        return RestCase("deep-json", "POST", v1 if "instances" in text else infer, text.encode(), json_headers)

    def wrong_types() -> RestCase:
        body = base.v2_body(rng)
        target = rng.randrange(6)
        if target == 0:
            body = _random_json(rng)
        elif target == 1:
            body["inputs"] = _random_json(rng)
        elif target == 2:
            tensor = rng.choice(body["inputs"])
            tensor[rng.choice(["name", "shape", "datatype", "data", "parameters"])] = _random_json(rng)
        elif target == 3:
            tensor = rng.choice(body["inputs"])
            tensor["data"] = [_random_json(rng) for _ in tensor["data"]]
            tensor["datatype"] = rng.choice(DATATYPES + BAD_DATATYPES)
        elif target == 4:
            body[rng.choice(["id", "parameters", "outputs"])] = _random_json(rng)
        else:
            body["outputs"] = [{"name": rng.choice(["probability", "predicted_class", "nope", ""]),
                                "parameters": rng.choice([{"binary_data": rng.choice([True, False, 1, "yes"])},
                                                          _random_json(rng)])}]
        return RestCase("wrong-types", "POST", infer, _json(body), json_headers)

    def non_finite() -> RestCase:
        body = base.v2_body(rng, rows=1)
        numeric = [n for n, d in base.datatypes.items() if d in ("FP64", "INT64")]
        name = rng.choice(numeric)
        tensor = next(t for t in body["inputs"] if t["name"] == name)
        style = rng.randrange(4)
        if style == 0:
            tensor["data"] = [rng.choice(NON_FINITE_TEXT + ODD_TEXT)]
            return RestCase("non-finite", "POST", infer, _json(body), json_headers)
        if style == 1:
            tensor["datatype"] = "FP64"
            text = _json(body).replace(json.dumps(tensor["data"]).encode(),
                                       rng.choice([b"[1e400]", b"[Infinity]", b"[-Infinity]", b"[NaN]", b"[-1e999]"]))
            return RestCase("non-finite", "POST", infer, text, json_headers)
        if style == 2:
            row = dict(rng.choice(base.rows))
            raw = _json({"instances": [row]}).replace(_json(row[name]) if row[name] is not None else b"null",
                                                      rng.choice([b"1e400", b"Infinity", b"NaN", b"-1e999"]), 1)
            return RestCase("non-finite", "POST", v1, raw, json_headers)
        row = dict(rng.choice(base.rows))
        row[name] = rng.choice(NON_FINITE_TEXT)
        return RestCase("non-finite", "POST", v1, _json({"instances": [row]}), json_headers)

    def huge() -> RestCase:
        style = rng.randrange(6)
        if style == 5:  # over the server's body limit (8 MiB at the default max_batch): 413
            body = base.v2_body(rng, rows=1)
            body["inputs"][0]["data"] = ["w" * (9 * 2**20)]
            return RestCase("huge", "POST", infer, _json(body), json_headers)
        if style == 0:
            return RestCase("huge", "POST", infer, _json(base.v2_body(rng, rows=max_batch + rng.randint(1, 50))),
                            json_headers)
        if style == 1:
            body = base.v2_body(rng, rows=1)
            body["inputs"][0]["name"] = "n" * rng.choice([10_000, 1_000_000, 5_000_000])
            return RestCase("huge", "POST", infer, _json(body), json_headers)
        if style == 2:
            body = base.v2_body(rng, rows=1)
            body["inputs"][rng.randrange(len(body["inputs"]))]["data"] = ["v" * rng.choice([100_000, 3_000_000])]
            return RestCase("huge", "POST", infer, _json(body), json_headers)
        if style == 3:
            body = base.v2_body(rng, rows=1)
            body["inputs"] += [{"name": f"extra{i}", "shape": [1], "datatype": "BYTES", "data": ["x"]}
                               for i in range(rng.choice([1000, 20_000]))]
            return RestCase("huge", "POST", infer, _json(body), json_headers)
        rows = [dict(rng.choice(base.rows)) for _ in range(max_batch + rng.randint(1, 100))]
        return RestCase("huge", "POST", v1, _json({"instances": rows}), json_headers)

    def binary() -> RestCase:
        body = base.v2_body(rng, rows=1)
        tails = []
        style = rng.randrange(10)
        victim = rng.randrange(len(body["inputs"]))
        for index, tensor in enumerate(body["inputs"]):
            values = [v.encode() for v in tensor.pop("data")]
            raw = _bytes_tensor(values)
            if index == victim:
                if style == 0:  # length prefix longer than the data
                    raw = struct.pack("<I", 50) + values[0]
                elif style == 1:  # shorter than the 4-byte prefix
                    raw = raw[:rng.randrange(0, 4)]
                elif style == 2:  # not UTF-8
                    raw = _bytes_tensor([rng.choice([b"\xff\xfe", b"\xc3\x28", b"\x80", b"ok\xed\xa0\x80"])])
                elif style == 3:
                    tensor["shape"] = [rng.choice([-1, -5, 0, 2, 2**40])]
                elif style == 4:
                    tensor["datatype"] = rng.choice(["FP64", "INT64", "FP32", "BOOL", "INT8", "FP16", "UINT64"])
                    raw = bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 7, 8, 9, 16])))
                elif style == 5:
                    tensor["datatype"] = "FP64"
                    raw = struct.pack("<d", rng.choice([math.inf, -math.inf, math.nan, 1e308]))
            tails.append(raw)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            if index == victim and style == 6:
                tensor["parameters"] = {"binary_data_size": rng.choice([-1, 10**9, "8", 1.5, None, [], 2**64])}
        header = _json(body)
        payload = header + b"".join(tails)
        length: Any = len(header)
        if style == 7:
            length = rng.choice([-1, 0, len(payload) + 1, 10**12, "abc", "", "+12", "1e3", len(header) - 1])
        elif style == 8:
            payload += bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif style == 9:
            payload = payload[:rng.randrange(len(header), len(payload))]
        headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(length)}
        return RestCase("binary-extension", "POST", infer, payload, headers)

    def shapes() -> RestCase:
        body = base.v2_body(rng, rows=rng.randint(1, 3))
        tensor = rng.choice(body["inputs"])
        tensor["shape"] = rng.choice([[-1], [-2, 1], [0], [2**63 - 1], [len(tensor["data"]) + 1], [1, 1, 1], [],
                                      [len(tensor["data"]), 2], [2**31, 2**31], [1, -1]])
        if rng.random() < 0.3:
            body = {"inputs": [{"name": "rows", "datatype": "BYTES",
                                "shape": rng.choice([[1, len(base.names)], [1, len(base.names) + 1], [-1, 24], [2, 12]]),
                                "data": rng.choice([[["1"] * len(base.names)], ["1"] * len(base.names), [[]], [[[]]]])}]}
        return RestCase("shapes", "POST", infer, _json(body), json_headers)

    def content_types() -> RestCase:
        path = rng.choice([infer, v1])
        raw = _json(base.v2_body(rng) if path == infer else base.v1_body(rng))
        headers = rng.choice([
            {"content-type": "text/plain"},
            {"content-type": "application/x-www-form-urlencoded"},
            {"content-type": "multipart/form-data; boundary=x"},
            {"content-type": "application/octet-stream"},
            {"content-type": "application/cloudevents+json"},
            {"content-type": "application/json; charset=latin-1"},
            {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "1", "ce-source": "x",
             "ce-type": "y"},
            {"content-type": "application/json", "content-encoding": "gzip"},
            {},
        ])
        if rng.random() < 0.3:
            raw = b"fuzz=1&x=2" if rng.random() < 0.5 else raw.decode().encode("utf-16")
        return RestCase("content-types", "POST", path, raw, headers)

    def names() -> RestCase:
        name = rng.choice([base.model_name, "nope", "", "%2e%2e", "..", "a" * 5000, "💥", "credit-default%00",
                           base.model_name.upper(), base.model_name + "/", "%ZZ"])
        version = rng.choice([None, base.version, "0", "999", "", "-1", "latest", "v" + base.version, "x" * 5000,
                              "%20", "1.0"])
        style = rng.randrange(6)
        if style == 0:
            path = f"/v2/models/{name}/infer"
        elif style == 1:
            path = f"/v2/models/{name}/versions/{version}/infer"
        elif style == 2:
            path = f"/v2/models/{name}/infer?model_version={version}"
        elif style == 3:
            path = rng.choice([f"/v2/models/{name}", f"/v2/models/{name}/versions/{version}",
                               f"/v2/models/{name}/ready", f"/v2/models/{name}/versions/{version}/ready",
                               f"/v1/models/{name}", f"/v2/models/{name}?model_version={version}"])
            return RestCase("names", "GET", path)
        elif style == 4:
            path = rng.choice([f"/v2/repository/models/{name}/unload", f"/v2/repository/models/{name}/load",
                               f"/v1/models/{name}:explain", f"/v1/models/{name}:predict"])
        else:
            path = rng.choice(["/v2/models/" + base.model_name + "/infer/extra", "/v2//models",
                               "/v1/models/:predict", "/v2/health/ready?x=" + "y" * 4000])
        body = _json(base.v1_body(rng) if path.startswith("/v1") else base.v2_body(rng))
        return RestCase("names", rng.choice(["POST", "POST", "PUT", "DELETE"]), path, body, json_headers)

    def v1_bodies() -> RestCase:
        body = base.v1_body(rng)
        style = rng.randrange(6)
        if style == 0:
            body["instances"] = _random_json(rng)
        elif style == 1:
            body["instances"][0] = _random_json(rng)
        elif style == 2:
            row = body["instances"][0]
            row[rng.choice(list(row))] = _random_json(rng)
        elif style == 3:
            body["instances"] = [list(r.values())[:rng.randrange(0, 30)] for r in body["instances"]]
        elif style == 4:
            body = {"inputs": body["instances"]} if rng.random() < 0.5 else {"instances": [], "x": 1}
        else:
            body["instances"].append(rng.choice([[1, 2], "row", None, {}]))
        return RestCase("v1-bodies", "POST", v1, _json(body), json_headers)

    def flips() -> RestCase:
        raw = bytearray(body_bytes())
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        return RestCase("byte-flips", "POST", infer, bytes(raw), json_headers)

    return {"truncated-json": truncated, "duplicate-keys": duplicate_keys, "deep-json": deep,
            "wrong-types": wrong_types, "non-finite": non_finite, "huge": huge, "binary-extension": binary,
            "shapes": shapes, "content-types": content_types, "names": names, "v1-bodies": v1_bodies,
            "byte-flips": flips}


REST_CLASSES = ("truncated-json", "duplicate-keys", "deep-json", "wrong-types", "non-finite", "huge",
                "binary-extension", "shapes", "content-types", "names", "v1-bodies", "byte-flips")
# Huge bodies are a few MiB each: send fewer of them.
_REST_WEIGHTS = {"huge": 0.15}


def generate_rest(base: Baseline, count: int, seed: int, max_batch: int) -> Iterator[RestCase]:
    """``count`` cases, classes in turn (huge ones less often), reproducible from ``seed``."""
    rng = random.Random(seed)
    builders = rest_cases(base, rng, max_batch)
    sent = 0
    index = 0
    while sent < count:
        kind = REST_CLASSES[index % len(REST_CLASSES)]
        index += 1
        if kind in _REST_WEIGHTS and rng.random() > _REST_WEIGHTS[kind]:
            continue
        sent += 1
        yield builders[kind]()


def send_rest(url: str, cases: Iterator[RestCase], tally: Tally, timeout: float = 30.0,
              deadline: float | None = None) -> Tally:
    """Send each case on one keep-alive client; a status >= 500 (or no answer) is a failure."""
    import socket

    import httpx

    # httpx writes headers and body separately: without TCP_NODELAY, Nagle and delayed ACKs add 40 ms a request.
    transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
    with httpx.Client(base_url=url, timeout=timeout, transport=transport) as client:
        for case in cases:
            if deadline is not None and time.monotonic() > deadline:
                break
            try:
                response = client.request(case.method, case.path, content=case.body or None, headers=case.headers)
                status, detail = response.status_code, response.text[:300]
            except httpx.HTTPError as exc:
                status, detail = "no-answer", f"{type(exc).__name__}: {exc}"
            bad = status == "no-answer" or status >= 500
            tally.record(case.kind, status, bad, f"{case.method} {case.path[:100]} -> {detail}")
    return tally


# -- gRPC -------------------------------------------------------------------------------------


GRPC_CLASSES = ("wrong-datatypes", "wrong-contents", "raw-contents", "shapes", "missing-inputs", "non-finite",
                "names", "undecodable", "other-rpcs")


def generate_grpc(base: Baseline, count: int, seed: int) -> Iterator[GrpcCase]:
    """``count`` gRPC cases, classes in turn, reproducible from ``seed``."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    rng = random.Random(seed)
    tensor_type = pb.ModelInferRequest.InferInputTensor
    infer = "/inference.GRPCInferenceService/ModelInfer"
    content_fields = ["bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
                      "fp32_contents", "fp64_contents", "bytes_contents"]

    def valid(rows: int = 1) -> Any:
        chosen = [rng.choice(base.rows) for _ in range(rows)]
        return pb.ModelInferRequest(model_name=base.model_name, inputs=[
            tensor_type(name=n, datatype="BYTES", shape=[rows],
                        contents=pb.InferTensorContents(bytes_contents=[base.text(r[n]).encode() for r in chosen]))
            for n in base.names])

    def contents_for(kind: str, n: int) -> Any:
        values = {"bool_contents": [rng.random() < 0.5 for _ in range(n)],
                  "int_contents": [rng.randint(-2**31, 2**31 - 1) for _ in range(n)],
                  "int64_contents": [rng.randint(-2**63, 2**63 - 1) for _ in range(n)],
                  "uint_contents": [rng.randint(0, 2**32 - 1) for _ in range(n)],
                  "uint64_contents": [rng.randint(0, 2**64 - 1) for _ in range(n)],
                  "fp32_contents": [rng.uniform(-1e6, 1e6) for _ in range(n)],
                  "fp64_contents": [rng.choice([0.5, -3.0, 1e300, 7.0]) for _ in range(n)],
                  "bytes_contents": [rng.choice([b"1", b"x", b"", b"\xff", "é".encode()]) for _ in range(n)]}[kind]
        return pb.InferTensorContents(**{kind: values})

    def build(kind: str) -> GrpcCase:
        request = valid(rng.randint(1, 3))
        tensor = rng.choice(request.inputs)
        if kind == "wrong-datatypes":
            tensor.datatype = rng.choice(DATATYPES + BAD_DATATYPES)
            if rng.random() < 0.5:
                tensor.contents.CopyFrom(contents_for(rng.choice(content_fields), tensor.shape[0]))
        elif kind == "wrong-contents":
            tensor.datatype = rng.choice(DATATYPES)
            tensor.contents.CopyFrom(contents_for(rng.choice(content_fields), rng.choice([0, 1, tensor.shape[0], 5])))
        elif kind == "raw-contents":
            raws = []
            for t in request.inputs:
                values = list(t.contents.bytes_contents)
                t.ClearField("contents")
                raws.append(_bytes_tensor(values))
            index = list(request.inputs).index(tensor)
            style = rng.randrange(6)
            if style == 0:
                raws[index] = struct.pack("<I", 99) + b"ab"
            elif style == 1:
                raws[index] = raws[index][:rng.randrange(0, 4)] if raws[index] else b"\x01"
            elif style == 2:
                raws[index] = _bytes_tensor([b"\xff\xfe"] * tensor.shape[0])
            elif style == 3:
                tensor.datatype = rng.choice(["FP64", "INT64", "FP32", "BOOL", "FP16", "UINT8"])
                raws[index] = bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 5, 8, 9, 24])))
            elif style == 4:
                raws = raws[:-1]
            else:
                tensor.contents.CopyFrom(pb.InferTensorContents(bytes_contents=[b"1"]))
            request.raw_input_contents.extend(raws)
        elif kind == "shapes":
            del tensor.shape[:]
            tensor.shape.extend(rng.choice([[-1], [0], [2**62], [1, 1, 1], [], [5], [1, 2], [-3, 2]]))
        elif kind == "missing-inputs":
            style = rng.randrange(3)
            if style == 0:
                del request.inputs[rng.randrange(len(request.inputs))]
            elif style == 1:
                request.inputs.append(tensor)
            else:
                del request.inputs[:]
        elif kind == "non-finite":
            numeric = [t for t in request.inputs if base.datatypes.get(t.name) in ("FP64", "INT64")]
            tensor = rng.choice(numeric)
            n = tensor.shape[0]
            value = rng.choice([math.inf, -math.inf, math.nan])
            style = rng.randrange(3)
            if style == 0:
                tensor.datatype = "FP64"
                tensor.contents.CopyFrom(pb.InferTensorContents(fp64_contents=[value] * n))
            elif style == 1:
                tensor.datatype = "FP32"
                tensor.contents.CopyFrom(pb.InferTensorContents(fp32_contents=[value] * n))
            else:
                tensor.contents.CopyFrom(pb.InferTensorContents(
                    bytes_contents=[rng.choice(NON_FINITE_TEXT).encode()] * n))
        elif kind == "names":
            request.model_name = rng.choice(["", "nope", "x" * 5000, base.model_name.upper(), base.model_name])
            request.model_version = rng.choice(["", base.version, "0", "999", "x" * 3000, "latest"])
            if rng.random() < 0.3:
                request.outputs.add(name=rng.choice(["probability", "nope", ""]))
        elif kind == "undecodable":
            raw = request.SerializeToString()
            style = rng.randrange(4)
            if style == 0:
                payload = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
            elif style == 1:
                payload = raw[:rng.randrange(1, len(raw))]
            elif style == 2:
                flipped = bytearray(raw)
                for _ in range(rng.randint(1, 6)):
                    flipped[rng.randrange(len(flipped))] = rng.randrange(256)
                payload = bytes(flipped)
            else:
                payload = b"\x0a\x05\xff\xfe\xfd\xfc\xfb"  # model_name: 5 bytes that are not UTF-8
            return GrpcCase(kind, infer, payload)
        elif kind == "other-rpcs":
            method = rng.choice(["ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata",
                                 "RepositoryModelLoad", "RepositoryModelUnload"])
            if rng.random() < 0.5:
                payload = bytes(rng.randrange(256) for _ in range(rng.randint(0, 32)))
            else:
                message = {"ModelReady": pb.ModelReadyRequest, "ModelMetadata": pb.ModelMetadataRequest}.get(method)
                payload = (message(name=rng.choice([base.model_name, "nope", ""]),
                                   version=rng.choice(["", base.version, "7"])).SerializeToString()
                           if message else b"")
            return GrpcCase(kind, f"/inference.GRPCInferenceService/{method}", payload)
        return GrpcCase(kind, infer, request.SerializeToString())

    for index in range(count):
        yield build(GRPC_CLASSES[index % len(GRPC_CLASSES)])


def send_grpc(target: str, cases: Iterator[GrpcCase], tally: Tally, timeout: float = 30.0,
              deadline: float | None = None) -> Tally:
    """Send each case's bytes as they are; INTERNAL, UNKNOWN or no answer is a failure."""
    import grpc

    bad_codes = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.UNAVAILABLE,
                 grpc.StatusCode.DEADLINE_EXCEEDED}
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]) as channel:
        calls: dict[str, Any] = {}
        for case in cases:
            if deadline is not None and time.monotonic() > deadline:
                break
            call = calls.get(case.method)
            if call is None:
                call = calls[case.method] = channel.unary_unary(case.method, request_serializer=None,
                                                                response_deserializer=None)
            try:
                call(case.payload, timeout=timeout)
                status, detail = "OK", ""
            except grpc.RpcError as exc:
                status, detail = exc.code().name, exc.details() or ""
                bad = exc.code() in bad_codes
                tally.record(case.kind, status, bad, f"{case.method} -> {detail}")
                continue
            tally.record(case.kind, status, False, detail)
    return tally
