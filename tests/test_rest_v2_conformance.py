"""Tollgate's v2 REST infer route answers exactly as kserve's stock route does.

The route in ``serving/rest_v2.py`` (orjson decoding, a plain Starlette route ahead of
kserve's) exists for speed only. Two real servers on the same version — one with our
route, one with ``TOLLGATE_STOCK_V2_INFER=1`` so kserve's own route and pydantic models
handle the request — receive the same table of valid and invalid requests; status,
outputs and the class of error must agree.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tollgate.data.builtin import generate_applicants
from tollgate.serving.process import ServerProcess
from tollgate.serving.rest_v2 import STOCK_ROUTE_ENV
from tollgate.serving.schema import OIP_DATATYPE
from tollgate.steps.candidates import CandidateSpec
from tollgate.steps.preprocess import build_feature_spec, split_dataset
from tollgate.steps.train import save_candidate, train_candidate

MODEL = "conformance"


@pytest.fixture(scope="module")
def version(tmp_path_factory):
    frame = generate_applicants(rows=800, seed=99)
    spec = build_feature_spec(frame, "defaulted", 1, ["applicant_id"], "application_date")
    splits = split_dataset(frame, spec, 0.2, 0.2, 0)
    result = train_candidate(splits.train, splits.validation,
                             CandidateSpec("lr", "logistic_regression", {"max_iter": 300}), spec)
    directory = tmp_path_factory.mktemp("version")
    save_candidate(result, directory)
    (directory / "input_schema.json").write_text(json.dumps(spec.schema))
    (directory / "metadata.json").write_text(json.dumps({"version": 1, "features": {
        "target": spec.target, "positive_label": spec.positive_label, "negative_label": spec.negative_label}}))
    rows = splits.test[spec.columns].dropna().head(3)
    records = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in rows.to_dict("records")]
    return directory, spec.schema["columns"], records


@pytest.fixture(scope="module")
def servers(version):
    directory = version[0]
    ours = ServerProcess(directory, MODEL)
    stock = ServerProcess(directory, MODEL, env={STOCK_ROUTE_ENV: "1"})
    with ours, stock:
        ours.wait_ready(90)
        stock.wait_ready(90)
        yield ours, stock


def _inputs(schema, records):
    return [{"name": c["name"], "shape": [len(records)], "datatype": OIP_DATATYPE[c["dtype"]],
             "data": [r[c["name"]] for r in records]} for c in schema]


def _cases(schema, records):
    good = _inputs(schema, records)
    one = _inputs(schema, records[:1])

    def edit(index, **change):
        inputs = json.loads(json.dumps(one))
        inputs[index].update(change)
        return {"inputs": inputs}

    numeric = next(i for i, c in enumerate(schema) if c["dtype"] == "float64")
    matrix = {"name": "rows", "shape": [1, len(schema)], "datatype": "BYTES",
              "data": [str(records[0][c["name"]]) for c in schema]}
    return {
        "batch of three": {"inputs": good},
        "batch of one with id and parameters": {"id": "abc", "parameters": {"x": 1}, "inputs": one},
        "one 2-D input in schema order": {"inputs": [matrix]},
        "requested output": {"inputs": one, "outputs": [{"name": "probability"}]},
        "not JSON": b"{not json",
        "a JSON array": [1, 2],
        "no inputs": {"id": "x"},
        "inputs not a list": {"inputs": {"a": 1}},
        "input without shape": {"inputs": [{k: v for k, v in one[0].items() if k != "shape"}] + one[1:]},
        "input without datatype": {"inputs": [{k: v for k, v in one[0].items() if k != "datatype"}] + one[1:]},
        "input without data": {"inputs": [{k: v for k, v in one[0].items() if k != "data"}] + one[1:]},
        "text in a number column": edit(numeric, datatype="BYTES", data=["lots"]),
        "missing column": {"inputs": one[1:]},
        "unknown column": {"inputs": one + [{"name": "zodiac", "shape": [1], "datatype": "BYTES", "data": ["leo"]}]},
        "rows disagree": edit(numeric, shape=[2], data=[1.0, 2.0]),
        "empty batch": {"inputs": [{**i, "shape": [0], "data": []} for i in one]},
    }


def _post(server, path, body):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.rest_url}{path}", content=content, headers={"content-type": "application/json"},
                      timeout=30)


def _without_nulls(value):
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def test_the_same_answers_as_kserves_stock_route(servers, version):
    ours, stock = servers
    _, schema, records = version
    for name, body in _cases(schema, records).items():
        got, expected = _post(ours, f"/v2/models/{MODEL}/infer", body), _post(stock, f"/v2/models/{MODEL}/infer", body)
        assert got.status_code == expected.status_code, (name, got.text, expected.text)
        if expected.status_code == 200:
            # kserve's pydantic response writes absent optional fields as null; ours leaves them out.
            mine, theirs = _without_nulls(got.json()), _without_nulls(expected.json())
            assert mine["outputs"] == theirs["outputs"], name
            assert (mine["model_name"], mine.get("id")) == (theirs["model_name"], theirs.get("id")), name
        else:
            assert 400 <= got.status_code < 500, (name, got.status_code)
            assert set(got.json()) == set(expected.json()) == {"error"}, (name, got.text, expected.text)


def test_unknown_model_agrees_and_versions_differ_only_as_documented(servers, version):
    ours, stock = servers
    _, schema, records = version
    body = {"inputs": _inputs(schema, records[:1])}
    got, expected = _post(ours, "/v2/models/nope/infer", body), _post(stock, "/v2/models/nope/infer", body)
    assert got.status_code == expected.status_code == 404 and got.json().keys() == expected.json().keys()
    # The one deliberate difference (serving/rest_v2.py): kserve answers 501 to any version; Tollgate
    # serves its one version under /versions/<v> and names it in a 404 for any other.
    assert _post(stock, f"/v2/models/{MODEL}/versions/1/infer", body).status_code == 501
    served = _post(ours, f"/v2/models/{MODEL}/versions/1/infer", body)
    plain = _post(ours, f"/v2/models/{MODEL}/infer", body)
    assert served.status_code == 200 and served.json()["outputs"] == plain.json()["outputs"]
    other = _post(ours, f"/v2/models/{MODEL}/versions/2/infer", body)
    assert other.status_code == 404 and "serves version '1'" in other.json()["error"]
    assert np.isfinite(served.json()["outputs"][1]["data"][0])
