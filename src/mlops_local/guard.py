"""Fake credentials and a guard that fails loudly if anything local tries to reach a real AWS endpoint."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    # botocore 1.44 sends some calls to account-based endpoints moto does not route.
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
}


class RealAwsEndpointError(RuntimeError):
    """Raised when a local run would have sent a request to AWS itself."""


def use_fake_credentials() -> None:
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        os.environ.pop(name, None)
    os.environ.update(FAKE_CREDENTIALS)
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull


_installed = False


def install_real_endpoint_guard() -> None:
    """Patch botocore's HTTP sender: a request that leaves the process for anything but loopback raises.

    moto's in-process mock answers before this point, and the embedded moto server listens on loopback, so
    only a request to real AWS (or anywhere else) ever reaches the check."""
    global _installed
    if _installed:
        return
    from botocore.httpsession import URLLib3Session

    original = URLLib3Session.send

    def guarded_send(self, request):  # type: ignore[no-untyped-def]
        host = urlsplit(request.url).hostname or ""
        if host not in LOOPBACK:
            raise RealAwsEndpointError(
                f"refusing to send {request.method} {request.url}: local runs and tests never reach real AWS"
            )
        return original(self, request)

    URLLib3Session.send = guarded_send  # type: ignore[method-assign]
    _installed = True


def secure_local_environment() -> None:
    use_fake_credentials()
    install_real_endpoint_guard()
