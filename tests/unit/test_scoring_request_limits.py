"""Request bodies the scoring API refuses before decoding them (security review of issue 12): the size limit in
bytes, compressed bodies, charsets and media types; and 5xx answers that keep internals in the log."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from mlops.core.errors import ArtifactNotFoundError, NoLiveModelError, TransientError
from mlops.serving import api
from mlops.serving.api import MAX_BODY_BYTES, error_response, parse_request

from mlops_local.apigw import proxy_event

INSTANCES = {"instances": [{"x": 1}]}


def event(body: str | None, headers: dict | None = None, is_base64: bool = False) -> dict:
    built = proxy_event("POST", "/models/fam/predict", body, is_base64=is_base64)
    built["headers"] = headers if headers is not None else {"Content-Type": "application/json"}
    return built


def status_of(built: dict) -> int:
    try:
        parse_request(built)
    except api.ValidationError as exc:
        return exc.http_status
    return 200


def test_a_body_of_3_million_two_byte_characters_is_413_although_it_has_fewer_characters_than_the_limit():
    body = json.dumps({"instances": [{"name": "é" * 3_000_000}]}, ensure_ascii=False)
    assert len(body) < MAX_BODY_BYTES < len(body.encode())
    with pytest.raises(api.PayloadTooLargeError, match=f"{len(body.encode())} bytes; the limit is {MAX_BODY_BYTES}"):
        parse_request(event(body))


def test_bodies_under_the_limit_in_bytes_are_parsed():
    body = json.dumps({"instances": [{"name": "é" * 1_000_000}]}, ensure_ascii=False)
    assert len(body.encode()) < MAX_BODY_BYTES
    assert parse_request(event(body))[0][0]["name"] == "é" * 1_000_000


def test_an_oversize_body_is_refused_before_it_is_decoded(monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("decoded an oversize body")

    monkeypatch.setattr(api.orjson, "loads", never)
    with pytest.raises(api.PayloadTooLargeError, match="at least"):
        parse_request(event("x" * (MAX_BODY_BYTES + 1)))
    raw = b"{" + b" " * MAX_BODY_BYTES + b"}"
    monkeypatch.setattr(api.base64, "b64decode", never)
    with pytest.raises(api.PayloadTooLargeError):
        parse_request(event(base64.b64encode(raw).decode(), is_base64=True))


def test_a_base64_body_is_measured_by_its_decoded_bytes():
    raw = json.dumps(INSTANCES).encode()
    assert parse_request(event(base64.b64encode(raw).decode(), is_base64=True))[0] == INSTANCES["instances"]


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "deflate", "br"])
def test_a_compressed_body_is_415_naming_the_encoding(encoding):
    body = base64.b64encode(gzip.compress(json.dumps(INSTANCES).encode())).decode()
    built = event(body, {"Content-Type": "application/json", "Content-Encoding": encoding}, is_base64=True)
    with pytest.raises(api.UnsupportedMediaTypeError, match=f"Content-Encoding '{encoding}' is not supported"):
        parse_request(built)


def test_a_gzip_body_under_an_unusual_header_spelling_is_415_not_invalid_json():
    text = gzip.compress(json.dumps(INSTANCES).encode()).decode("latin-1")
    built = event(text, {"Content-Type": "application/json", "CONTENT-ENCODING": "gzip"})
    with pytest.raises(api.UnsupportedMediaTypeError, match="Content-Encoding 'gzip'"):
        parse_request(built)


def test_identity_encoding_is_accepted():
    built = event(json.dumps(INSTANCES), {"Content-Type": "application/json", "content-encoding": "identity"})
    assert parse_request(built)[0] == INSTANCES["instances"]


@pytest.mark.parametrize(("content_type", "status"), [
    ("application/json", 200), ("application/json; charset=utf-8", 200), ("Application/JSON; Charset=\"UTF-8\"", 200),
    ("text/json", 200), ("application/json; charset=utf-16", 415), ("application/json;charset=latin-1", 415),
    ("", 415), ("   ", 415), ("text/plain", 415), ("application/x-www-form-urlencoded", 415)])
def test_content_types_and_charsets(content_type, status):
    assert status_of(event(json.dumps(INSTANCES), {"Content-Type": content_type})) == status


def test_an_empty_content_type_says_so():
    with pytest.raises(api.UnsupportedMediaTypeError, match="Content-Type is empty"):
        parse_request(event(json.dumps(INSTANCES), {"content-type": ""}))


def test_a_charset_refusal_names_the_charset():
    with pytest.raises(api.UnsupportedMediaTypeError, match="charset 'utf-16' is not supported"):
        parse_request(event(json.dumps(INSTANCES), {"Content-Type": "application/json; charset=utf-16"}))


def test_no_content_type_is_read_as_json():
    assert status_of(event(json.dumps(INSTANCES), {})) == 200


def test_5xx_answers_keep_bucket_key_and_dependency_errors_out_of_the_response():
    missing = ArtifactNotFoundError("s3://secret-bucket/models/sha256/abc does not exist", key="models/sha256/abc")
    throttled = TransientError("DynamoDB throttled: arn:aws:dynamodb:us-east-1:123456789012:table/registry")
    for exc in (missing, throttled):
        response = error_response(exc, "req-1")
        assert response["statusCode"] == 503
        body = json.loads(response["body"])
        assert "secret-bucket" not in response["body"] and "arn:aws" not in response["body"]
        assert body["error"] == "ServiceUnavailable" and body["request_id"] == "req-1"
    written = error_response(NoLiveModelError("model fam v2 is unavailable"), "req-2")
    assert json.loads(written["body"])["message"] == "model fam v2 is unavailable"
