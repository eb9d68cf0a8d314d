"""Decision ids: how each scored record is named, so delayed ground truth can be joined to it (docs/performance.md).

A one-record request's decision is named by its request id; in a batch record i is `<request id>:<i>`. A client may
instead send its own `id` per instance (an application id, a loan number): the record is then named by that id,
the id is echoed in the response's `decision_ids`, stored in the decision record (`ids`, null for a record sent
without one) and never reaches the model. A label may name a record by either name (`<request id>:<i>` always
works).

Imported by the scoring function: stdlib only, no allocation on a request without client ids.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from mlops.core.errors import ValidationError

CLIENT_ID_FIELD = "id"
MAX_ID_CHARS = 128
# Letters, digits and . _ : / - (an application number, a UUID, "loan/2025/0042"); no spaces, no control characters.
_ID = re.compile(r"[A-Za-z0-9._:/-]{1,128}")  # fullmatch: `$` would let a trailing newline through


def split_client_ids(instances: Any, feature_names: frozenset[str]) -> tuple[Any, list[str | None] | None]:
    """The instances without their client `id` field, and per record its id as text (None for a record sent
    without one); (instances, None) when no instance carries an id, or when the family has a feature named `id`
    (then it is that feature's value).

    instances: the request's `instances` value as parsed (anything: the scorer names its own problems). An id is text of
    1 to MAX_ID_CHARS letters, digits and . _ : / -, or an integer in the signed 64-bit range (not a boolean). Ids
    should be unique: one repeated (in a request or across requests) names several decisions, and labels for it are
    counted as ambiguous and not joined (mlops.monitoring.performance). Raises ValidationError naming the first
    malformed id. The records carrying an id are copied (the caller's
    are left intact)."""
    if type(instances) is not list or not instances or CLIENT_ID_FIELD in feature_names:
        return instances, None
    if len(instances) == 1:  # the common single-record request: one lookup
        first = instances[0]
        if type(first) is not dict or CLIENT_ID_FIELD not in first:
            return instances, None
    elif not any(type(r) is dict and CLIENT_ID_FIELD in r for r in instances):
        return instances, None
    stripped: list[Any] = []
    ids: list[str | None] = []
    for index, record in enumerate(instances):
        if type(record) is not dict or CLIENT_ID_FIELD not in record:
            stripped.append(record)
            ids.append(None)
            continue
        copy = dict(record)
        ids.append(_client_id(copy.pop(CLIENT_ID_FIELD), index))
        stripped.append(copy)
    return stripped, ids


MAX_INTEGER_ID = 2**63 - 1


def _client_id(value: Any, index: int) -> str:
    if type(value) is int:
        if not -MAX_INTEGER_ID - 1 <= value <= MAX_INTEGER_ID:
            raise ValidationError(f"instances[{index}].{CLIENT_ID_FIELD} must be an integer in the signed 64-bit "
                                  "range, or text")
        return str(value)
    if type(value) is not str:
        shown = "a boolean" if isinstance(value, bool) else "null" if value is None else type(value).__name__
        raise ValidationError(f"instances[{index}].{CLIENT_ID_FIELD} must be text or an integer, got {shown}")
    if not _ID.fullmatch(value):
        raise ValidationError(f"instances[{index}].{CLIENT_ID_FIELD} {value[:40]!r} must be 1 to {MAX_ID_CHARS} "
                              "letters, digits or . _ : / -")
    return value


def decision_ids(request_id: str, records: int, client_ids: list[str | None] | None = None) -> list[str]:
    """The decision id of each record: the client's id when it gave one, else the request id for a one-record
    request and `<request id>:<index>` for a record of a batch."""
    if records == 1:
        return [client_ids[0] or request_id] if client_ids else [request_id]
    if client_ids is None:
        return [f"{request_id}:{i}" for i in range(records)]
    return [client or f"{request_id}:{i}" for i, client in enumerate(client_ids)]


def names(line: dict[str, Any]) -> Iterator[tuple[str, int]]:
    """Every name under which a label may refer to the records of one decision line (mlops.serving.decisions), with the
    record's index: `<request id>:<i>` for each record, the request id alone for a one-record request, and the
    client's id of each record when the request carried them."""
    request_id = str(line.get("request_id", ""))
    count = int(line.get("records", 0) or 0)
    for i in range(count):
        yield f"{request_id}:{i}", i
    if count == 1:
        yield request_id, 0
    for i, client_id in enumerate(line.get("ids") or ()):
        if client_id is not None:
            yield str(client_id), i
