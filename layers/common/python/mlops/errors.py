"""Domain errors of the platform; each maps to one HTTP status and one Step Functions error name."""

from __future__ import annotations


class PlatformError(Exception):
    """Base class: `code` is the error name Step Functions matches and clients see."""

    code = "PlatformError"
    http_status = 500

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ConfigurationError(PlatformError):
    code = "ConfigurationError"


class ValidationError(PlatformError):
    """The caller sent something malformed; the message names the problem."""

    code = "ValidationError"
    http_status = 400


class DataSetError(PlatformError):
    """A training data set is unusable (empty, wrong columns, wrong types, too large...)."""

    code = "DataSetError"
    http_status = 400


class UnknownFamilyError(PlatformError):
    code = "UnknownFamily"
    http_status = 404


class NoLiveModelError(PlatformError):
    code = "NoLiveModel"
    http_status = 503


class IntegrityError(PlatformError):
    """Stored bytes do not match their content address: never load them."""

    code = "IntegrityError"


class ArtifactNotFoundError(PlatformError):
    code = "ArtifactNotFound"


class IllegalTransitionError(PlatformError):
    code = "IllegalTransition"
    http_status = 409


class ConcurrencyConflictError(PlatformError):
    """A conditional write lost a race; the caller may retry."""

    code = "ConcurrencyConflict"
    http_status = 409


class RolloutInProgressError(PlatformError):
    code = "RolloutInProgress"
    http_status = 409


class TransientError(PlatformError):
    """Throttling or a 5xx from a dependency: Step Functions retries these with backoff."""

    code = "TransientError"
    http_status = 503
