"""Domain errors of the platform; each maps to one HTTP status and one Step Functions error name."""

from __future__ import annotations


class PlatformError(Exception):
    """Base class: `code` is the error name Step Functions matches and clients see."""

    http_status = 500

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    @property
    def code(self) -> str:
        # Lambda reports the exception class name as errorType; Retry/Catch and clients see the same name.
        return type(self).__name__

    def to_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class ConfigurationError(PlatformError):
    """A function's environment or a family declaration is invalid."""


class ValidationError(PlatformError):
    """The caller sent something malformed; the message names the problem."""

    http_status = 400


class DataSetError(PlatformError):
    """A training data set is unusable (empty, wrong columns, wrong types, too large...)."""

    http_status = 400


class UnknownFamilyError(PlatformError):
    http_status = 404


class FamilyRetiredError(PlatformError):
    """The family was retired (`mlops families retire`): no new runs start and scoring answers 404 naming the
    retirement; `mlops families apply` brings it back (docs/families.md, "Retiring a family")."""

    http_status = 404


class NoLiveModelError(PlatformError):
    http_status = 503


class IntegrityError(PlatformError):
    """Stored bytes do not match their content address: never load them."""


class ArtifactNotFoundError(PlatformError):
    """No object is stored under that content address."""


class IllegalTransitionError(PlatformError):
    http_status = 409


class ConcurrencyConflictError(PlatformError):
    """A conditional write lost a race; the caller may retry."""

    http_status = 409


class RolloutInProgressError(PlatformError):
    http_status = 409


class TransientError(PlatformError):
    """Throttling or a 5xx from a dependency: Step Functions retries these with backoff."""

    http_status = 503


class ExplanationUnavailableError(PlatformError):
    """The served model version cannot be explained (trained before explanations, or a task the explainer does
    not cover); predictions still work without `explain`."""

    http_status = 409


class DecisionNotFoundError(PlatformError):
    """No decision record holds that request id (unknown, older than the trail, or not yet written)."""

    http_status = 404
