"""The CLI's way to the IAM-authorized management routes: requests signed with AWS Signature Version 4 by botocore
from the user's credentials, checked against a reference implementation of the algorithm (itself checked on AWS's
published test vector), with fake credentials and no network; answers mapped to exit codes; and the scoring side's
retirement check with its TTL."""

from __future__ import annotations

import hashlib
import hmac
import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
from mlops.core.errors import FamilyRetiredError
from mlops.serving.family_status import FamilyStatus

from mlops_local.client import ManagementApi, ManagementError, PlatformUnreachable
from mlops_local.guard import RealAwsEndpointError

API = "https://abc123.execute-api.eu-west-1.amazonaws.com/prod"
KEY, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "FQoGZXIvYXdzEXAMPLETOKEN"


# ---- reference SigV4 (docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html) ----------------------

def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def reference_signature(secret: str, method: str, path: str, query: str, headers: dict[str, str], signed: list[str],
                        payload: bytes, amz_date: str, region: str, service: str) -> str:
    pairs = sorted(parse_qsl(query, keep_blank_values=True))
    canonical_query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in pairs)
    lowered = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in signed)
    canonical = "\n".join([method, quote(path, safe="/-_.~"), canonical_query, canonical_headers, ";".join(signed),
                           hashlib.sha256(payload).hexdigest()])
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), amz_date[:8]), region), service), "aws4_request")
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_reference_implementation_reproduces_aws_published_get_vanilla_vector():
    # aws-sig-v4-test-suite/get-vanilla: GET / on example.amazonaws.com, service "service", 2015-08-30T12:36:00Z.
    signature = reference_signature(SECRET, "GET", "/", "", {"Host": "example.amazonaws.com",
                                                             "X-Amz-Date": "20150830T123600Z"},
                                    ["host", "x-amz-date"], b"", "20150830T123600Z", "us-east-1", "service")
    assert signature == "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"


class Recorder:
    """Stands in for the HTTP session: records the prepared request, answers with a canned response."""

    def __init__(self, status: int = 200, body: Any = None) -> None:
        self.requests: list[Any] = []
        self.status, self.body = status, {"ok": True} if body is None else body

    def __call__(self, prepared: Any) -> Any:
        self.requests.append(prepared)
        content = self.body if isinstance(self.body, bytes) else json.dumps(self.body).encode()
        return SimpleNamespace(status_code=self.status, content=content)


def _session(token: str | None = TOKEN) -> Any:
    return boto3.Session(aws_access_key_id=KEY, aws_secret_access_key=SECRET, aws_session_token=token,
                         region_name="eu-west-1")


@pytest.mark.parametrize(("method", "path", "body", "query"), [
    ("PUT", "/families/loans", {"family": {"name": "loans"}, "reason": "first declaration"}, None),
    ("DELETE", "/families/loans", {"reason": "retired: é, ü and spaces"}, None),
    ("GET", "/families", None, {"status": "active", "limit": "100", "next_token": "eyJhZnRlciI6ICJ4In0="}),
])
def test_requests_carry_a_valid_sigv4_signature_for_execute_api_from_the_users_credentials(method, path, body, query):
    send = Recorder()
    ManagementApi(API, _session(), send=send).request(method, path, body, query)
    (request,) = send.requests
    headers = dict(request.headers)
    authorization = headers["Authorization"]
    algorithm, _, rest = authorization.partition(" ")
    fields = dict(part.strip().split("=", 1) for part in rest.split(","))
    amz_date = headers["X-Amz-Date"]
    assert algorithm == "AWS4-HMAC-SHA256"
    assert fields["Credential"] == f"{KEY}/{amz_date[:8]}/eu-west-1/execute-api/aws4_request"
    assert headers["X-Amz-Security-Token"] == TOKEN
    signed = fields["SignedHeaders"].split(";")
    assert {"host", "x-amz-date", "x-amz-security-token"} <= set(signed)
    url = urlsplit(request.url)
    assert url.path == "/prod" + path
    all_headers = {**headers, "Host": url.netloc}
    payload = request.body or b""
    payload = payload.encode() if isinstance(payload, str) else payload
    assert json.loads(payload or b"null") == body
    expected = reference_signature(SECRET, method, url.path, url.query, all_headers, signed, payload, amz_date,
                                   "eu-west-1", "execute-api")
    assert fields["Signature"] == expected


def test_a_tampered_body_no_longer_matches_the_signature():
    send = Recorder()
    ManagementApi(API, _session(None), send=send).request("PUT", "/families/loans", {"reason": "a"})
    request = send.requests[0]
    headers = dict(request.headers)
    fields = dict(p.strip().split("=", 1) for p in headers["Authorization"].partition(" ")[2].split(","))
    url = urlsplit(request.url)
    tampered = reference_signature(SECRET, "PUT", url.path, url.query, {**headers, "Host": url.netloc},
                                   fields["SignedHeaders"].split(";"), b'{"reason": "b"}', headers["X-Amz-Date"],
                                   "eu-west-1", "execute-api")
    assert tampered != fields["Signature"] and "X-Amz-Security-Token" not in headers


@pytest.mark.parametrize(("status", "body", "exit_code", "text"), [
    (400, {"error": "ValidationError", "message": "threshold: Input should be less than 1"}, 2, "threshold"),
    (404, {"error": "UnknownFamilyError", "message": "model family 'x' is not registered"}, 2, "not registered"),
    (409, {"error": "RolloutInProgressError", "message": "rollout r1 holds 'x'"}, 4, "rollout r1"),
    (403, {"message": "User: arn:aws:iam::1:user/bob is not authorized"}, 1, "execute-api:Invoke on PUT /families/*"),
])
def test_4xx_answers_become_errors_naming_the_problem(status, body, exit_code, text):
    api = ManagementApi(API, _session(), send=Recorder(status, body))
    with pytest.raises(ManagementError) as raised:
        api.request("PUT", "/families/x", {"reason": "r"})
    assert raised.value.exit_code == exit_code and text in raised.value.message


def test_5xx_and_unparseable_answers_mean_the_platform_is_unreachable():
    with pytest.raises(PlatformUnreachable, match="answered 502"):
        ManagementApi(API, _session(), send=Recorder(502, b"<html>Bad Gateway</html>")).request("GET", "/families")


def test_without_an_injected_sender_nothing_leaves_the_machine_in_tests():
    with pytest.raises(RealAwsEndpointError):
        ManagementApi(API, _session()).request("GET", "/families")


class FakeTable:
    def __init__(self) -> None:
        self.item: dict[str, Any] = {"status": {"S": "active"}, "changed_at": {"S": "2026-01-01T00:00:00.000000Z"}}
        self.reads = 0
        self.fail = False

    def get_item(self, **kwargs: Any) -> dict[str, Any]:
        self.reads += 1
        assert kwargs["Key"] == {"PK": {"S": "FAMILY#loans"}, "SK": {"S": "META"}}
        if self.fail:
            raise RuntimeError("throttled")
        return {"Item": self.item}


def test_family_status_reads_the_registry_once_per_ttl_and_raises_while_retired():
    table, now = FakeTable(), [100.0]
    status = FamilyStatus("registry", "loans", ttl_seconds=30, clock=lambda: now[0], ddb=table)
    for _ in range(1000):
        status.check()
    assert table.reads == 1
    table.item = {"status": {"S": "retired"}, "changed_at": {"S": "2026-02-01T09:00:00.000000Z"}}
    now[0] += 29.9
    status.check()  # still within the TTL: the last known status
    now[0] += 0.2
    with pytest.raises(FamilyRetiredError, match="'loans' is retired \\(since 2026-02-01T09:00:00"):
        status.check()
    table.fail = True
    now[0] += 31
    with pytest.raises(FamilyRetiredError):  # a failed read keeps the last known status
        status.check()
    assert table.reads == 3
