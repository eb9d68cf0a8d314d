"""How the CLI reaches a platform, one code path for both kinds:

- a `mlops local serve` started from the current folder, found through the file it writes there,
  `.mlops/local-serve.json` ({"api_url", "aws_endpoint_url", "bucket", "registry_table", "state_machine_arn",
  "pid", "families", "console_url"}; removed when it stops), with fake credentials and its loopback endpoint;
- a deployed stack (`--stack NAME`): its CloudFormation outputs ArtifactBucket, RegistryTable,
  PipelineStateMachine and ScoringApiUrl, read with the user's AWS profile and region (`--profile`, `--region`).

`platform_options` adds those options (and `--json`) to any command; `connect` turns them into a `Platform`.
Reads go to the platform's resources with the user's credentials; changes to families go through the platform's
IAM-authorized management routes (`ManagementApi`: SigV4-signed requests to `<api_url>/families...`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click

SERVER_FILE = Path(".mlops") / "local-serve.json"
STACK_OUTPUTS = {"bucket": "ArtifactBucket", "registry_table": "RegistryTable",
                 "state_machine_arn": "PipelineStateMachine", "api_url": "ScoringApiUrl"}
LOCAL_REGION = "us-east-1"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class PlatformUnreachable(click.ClickException):
    """Exit code 3: no local server found, stack outputs unreadable, or the platform stopped answering."""

    exit_code = 3


class NotFound(click.ClickException):
    """Exit code 2: an unknown family or run named on the command line."""

    exit_code = 2


@dataclass(frozen=True)
class TargetOptions:
    """The shared options as given: which platform, and whether the output is JSON."""

    stack: str | None = None
    profile: str | None = None
    region: str | None = None
    as_json: bool = False


def platform_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --stack/--profile/--region/--json; the command receives them as `target: TargetOptions`."""
    @click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout (for scripts) instead of tables.")
    @click.option("--region", metavar="REGION", help="AWS region of --stack (default: the profile's region).")
    @click.option("--profile", metavar="PROFILE", help="AWS profile for --stack (default: the usual credential "
                                                        "chain: environment, ~/.aws, SSO, instance role).")
    @click.option("--stack", metavar="NAME", help="A deployed platform stack, found through its CloudFormation "
                                                  "outputs. Default: the `mlops local serve` started from this "
                                                  "folder.")
    @functools.wraps(command)
    def wrapper(*args: Any, stack: str | None, profile: str | None, region: str | None, as_json: bool,
                **kwargs: Any) -> Any:
        return command(*args, target=TargetOptions(stack, profile, region, as_json), **kwargs)

    return wrapper


@dataclass
class Platform:
    """One reachable platform: its resource names and boto3 clients bound to its endpoint and credentials."""

    description: str
    bucket: str
    registry_table: str
    state_machine_arn: str
    api_url: str
    session: Any
    endpoint_url: str | None = None
    families: tuple[str, ...] = ()
    poll_seconds: float = 2.0
    # The function that runs drift checks (`mlops drift check`); None when the server or stack does not name it.
    drift_function: str | None = None
    # The drift fan-out state machine (`mlops drift check-all`); None when the server or stack does not name it.
    drift_fanout: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=60)
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint_url, config=config)
        return self._clients[service]

    @property
    def registry(self) -> Any:
        from mlops.registry.store import ModelRegistry

        return ModelRegistry(self.registry_table, ddb=self.client("dynamodb"))

    def management(self) -> ManagementApi:
        """The platform's management routes, signed with this platform's credentials."""
        return ManagementApi(self.api_url, self.session, description=self.description)


class ManagementError(click.ClickException):
    """A management route answered 4xx: `status` and the platform's `error` name; exit code 2 for a request the
    platform found invalid or naming an unknown family (400, 404, 413, 415), 4 for a change refused because of the
    family's state (409: a rollout holds it, or the configuration changed since the expected version), as
    `promote`/`rollback` refuse; 1 for anything else (403: not allowed)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error = status, error
        self.exit_code = 2 if status in (400, 404, 413, 415) else 4 if status == 409 else 1


class ManagementApi:
    """Requests to the IAM-authorized management routes (GET /families, GET|PUT|DELETE /families/{name}) of the
    API at `api_url`, signed with AWS Signature Version 4 (service `execute-api`) by botocore from the
    credentials of `session` (a boto3 Session: the user's profile for a stack; fake ones for a local server, whose
    front does not check them). `send` (tests): a function taking botocore's prepared request and returning an
    object with `status_code` and `content`; default botocore's own HTTP session."""

    def __init__(self, api_url: str, session: Any, description: str = "", send: Callable[[Any], Any] | None = None,
                 timeout: float = 60.0) -> None:
        self.base = api_url.rstrip("/")
        self.session = session
        self.description = description or self.base
        self._send = send
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                query: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON answer of `method path` (path below the API's stage URL, e.g. /families/loans). Raises
        ManagementError for a 4xx answer, PlatformUnreachable when the API cannot be reached or answers 5xx."""
        from urllib.parse import quote, urlencode

        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.exceptions import BotoCoreError

        url = self.base + quote(path) + (f"?{urlencode(sorted(query.items()))}" if query else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": "application/json", **({"Content-Type": "application/json"} if data else {})}
        request = AWSRequest(method=method, url=url, data=data, headers=headers)
        credentials = self.session.get_credentials()
        if credentials is None:
            raise PlatformUnreachable("no AWS credentials to sign the request with: configure a profile (aws "
                                      "configure / aws sso login) or pass --profile")
        region = self.session.region_name or LOCAL_REGION
        SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
        try:
            response = (self._send or self._default_send)(request.prepare())
        except (BotoCoreError, OSError) as exc:
            raise PlatformUnreachable(f"{self.description}: {method} {path} failed: {exc}") from None
        try:
            answer = json.loads(response.content or b"{}")
        except ValueError:
            answer = {"message": (response.content or b"")[:200].decode("utf-8", "replace")}
        if not isinstance(answer, dict):
            answer = {"message": str(answer)[:200]}
        status = int(response.status_code)
        if status >= 500:
            raise PlatformUnreachable(f"{self.description}: {method} {path} answered {status}: "
                                      f"{answer.get('message', '')}")
        if status >= 400:
            message = str(answer.get("message") or answer.get("Message") or f"HTTP {status}")
            if status == 403:
                message += (f" (your principal needs execute-api:Invoke on {method} {path.rsplit('/', 1)[0]}/* of "
                            "the platform's API)")
            raise ManagementError(status, str(answer.get("error") or status), message)
        return answer

    def _default_send(self, prepared: Any) -> Any:
        from botocore.httpsession import URLLib3Session
        from botocore.utils import get_environ_proxies

        return URLLib3Session(timeout=self.timeout, proxies=get_environ_proxies(self.base)).send(prepared)


def connect(target: TargetOptions, cwd: Path | None = None) -> Platform:
    """The platform the options name: `--stack NAME`, else the local server started from `cwd`."""
    if target.stack:
        return from_stack(target.stack, target.profile, target.region)
    if target.profile or target.region:
        raise click.UsageError("--profile and --region select the account of a deployed stack; add --stack NAME")
    return from_local_server(cwd or Path.cwd())


def from_local_server(cwd: Path) -> Platform:
    path = cwd / SERVER_FILE
    if not path.is_file():
        raise PlatformUnreachable(
            f"no `mlops local serve` is running from {cwd} ({SERVER_FILE} not found): start one in this folder, "
            "or pass --stack NAME for a deployed stack")
    try:
        info = json.loads(path.read_text())
        pid, endpoint = int(info["pid"]), str(info["aws_endpoint_url"])
        names = {k: str(info[k]) for k in ("bucket", "registry_table", "state_machine_arn", "api_url")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PlatformUnreachable(f"{path} is not a local server record ({type(exc).__name__}: {exc}); start "
                                  "`mlops local serve` again") from None
    if not _process_alive(pid):
        raise PlatformUnreachable(f"the local server recorded in {path} (pid {pid}) is not running; start "
                                  "`mlops local serve` again")
    if (urlsplit(endpoint).hostname or "") not in LOOPBACK:
        raise PlatformUnreachable(f"{path} names {endpoint}, not a local endpoint; refusing to send fake "
                                  "credentials anywhere else")
    import boto3

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                            aws_session_token="testing", region_name=LOCAL_REGION)
    return Platform(description=f"local server (pid {pid}, {cwd})", session=session, endpoint_url=endpoint,
                    families=tuple(info.get("families") or ()), poll_seconds=0.25,
                    drift_function=info.get("drift_function"), drift_fanout=info.get("drift_fanout"), **names)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stack_outputs(session: Any, stack: str) -> dict[str, str]:
    """The stack's CloudFormation outputs {OutputKey: OutputValue}."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        stacks = session.client("cloudformation").describe_stacks(StackName=stack)["Stacks"]
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", str(exc))
        raise PlatformUnreachable(f"stack {stack!r} in {session.region_name}: {message}") from None
    except BotoCoreError as exc:
        raise PlatformUnreachable(f"cannot read stack {stack!r}: {exc}") from None
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def from_stack(stack: str, profile: str | None, region: str | None) -> Platform:
    import boto3
    from botocore.exceptions import ProfileNotFound

    try:
        session = boto3.Session(profile_name=profile, region_name=region)
    except ProfileNotFound:
        raise click.UsageError(f"AWS profile {profile!r} is not configured") from None
    if not session.region_name:
        raise click.UsageError("no AWS region: pass --region, or set one in your profile or AWS_REGION")
    outputs = stack_outputs(session, stack)
    missing = [name for name in STACK_OUTPUTS.values() if name not in outputs]
    if missing:
        raise PlatformUnreachable(f"stack {stack!r} has no outputs {missing}: is it an MLOps platform stack?")
    return Platform(description=f"stack {stack} ({session.region_name})", session=session,
                    drift_function=outputs.get("DriftFunction"), drift_fanout=outputs.get("DriftFanout"),
                    **{attr: outputs[name] for attr, name in STACK_OUTPUTS.items()})


@contextlib.contextmanager
def reaching(platform: Platform) -> Iterator[None]:
    """AWS errors while talking to the platform become exit code 3 with the platform named, not a traceback."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise PlatformUnreachable(f"{platform.description}: {error.get('Code', '')}: "
                                  f"{error.get('Message', str(exc))}") from None
    except BotoCoreError as exc:
        raise PlatformUnreachable(f"{platform.description} stopped answering: {exc}") from None


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, default=str, sort_keys=True))
