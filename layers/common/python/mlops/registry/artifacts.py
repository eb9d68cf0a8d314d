"""Content-addressed artifact store on S3: keys are sha256 of the bytes, and every load re-checks the hash.

Two prefixes, so that access can follow the data's sensitivity: models (`models/sha256/<hex>`, kind `model/...`)
are all the scoring functions may read; training-derived data (holdouts with their sensitive attribute, baseline
profiles, fairness details, family configurations) stays under `artifacts/sha256/<hex>`, read by the pipeline,
drift checks and audits only. Models stored before the split live under the data prefix: `get_model` falls back
to it for the roles that may read it (the pipeline's); see docs/architecture.md for moving them."""

from __future__ import annotations

import base64
import hashlib
import io
import tempfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import orjson

from mlops.core import aws
from mlops.core.errors import ArtifactNotFoundError, DataSetError, IntegrityError, TransientError

ARTIFACT_PREFIX = "artifacts/sha256/"
MODEL_PREFIX = "models/sha256/"
MODEL_KIND_PREFIX = "model/"
SPOOL_BLOCK_BYTES = 1 << 20


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ArtifactRef:
    bucket: str
    key: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class StoredObject:
    """Bytes read from S3 with the exact object version they came from. `data` holds the bytes, or (read with
    `spool=True`) a temporary file holding them, rewound, removed when closed; `size` in bytes either way."""

    bucket: str
    key: str
    version_id: str | None
    etag: str
    sha256: str
    data: bytes | BinaryIO
    size: int = -1

    def __post_init__(self) -> None:
        if self.size < 0:
            size = len(self.data) if isinstance(self.data, bytes) else self.data.seek(0, io.SEEK_END)
            object.__setattr__(self, "size", size)


class ObjectStore(Protocol):
    def put(self, bucket: str, key: str, data: bytes, metadata: dict[str, str], content_type: str) -> None: ...
    def get(self, bucket: str, key: str, version_id: str | None = None, max_bytes: int | None = None,
            spool: bool = False) -> StoredObject: ...


class S3ObjectStore:
    """The real adapter: plain S3 calls, errors mapped to domain errors. `s3`: a client of the caller's (the CLI's
    platform session); default the process-wide one."""

    def __init__(self, s3: Any | None = None) -> None:
        self._s3 = s3

    def put(self, bucket: str, key: str, data: bytes, metadata: dict[str, str], content_type: str) -> None:
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        try:
            (self._s3 or aws.client("s3")).put_object(
                Bucket=bucket, Key=key, Body=data, Metadata=metadata, ContentType=content_type,
                ChecksumSHA256=checksum,
            )
        except Exception as exc:
            if aws.is_transient(exc):
                raise TransientError(f"S3 put s3://{bucket}/{key} throttled: {exc}") from exc
            raise

    def get(self, bucket: str, key: str, version_id: str | None = None, max_bytes: int | None = None,
            spool: bool = False) -> StoredObject:
        """The object (a given version), refused over `max_bytes`. `spool`: the body is streamed to a temporary
        file (hashed on the way, in blocks of SPOOL_BLOCK_BYTES) instead of being held in memory."""
        s3 = self._s3 or aws.client("s3")
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if version_id:
            kwargs["VersionId"] = version_id
        try:
            response = s3.get_object(**kwargs)
        except Exception as exc:
            code = aws.error_code(exc)
            if code in {"NoSuchKey", "404", "NoSuchVersion", "NotFound"}:
                raise ArtifactNotFoundError(f"s3://{bucket}/{key} does not exist", key=key) from None
            if code in {"AccessDenied", "403"}:  # without s3:ListBucket, S3 answers a missing key with 403
                raise ArtifactNotFoundError(f"s3://{bucket}/{key} does not exist or this role may not read it",
                                            key=key) from None
            if aws.is_transient(exc):
                raise TransientError(f"S3 get s3://{bucket}/{key} throttled: {exc}") from exc
            raise
        length = int(response.get("ContentLength") or 0)
        if max_bytes is not None and length > max_bytes:
            response["Body"].close()
            raise DataSetError(
                f"s3://{bucket}/{key} is {length} bytes, over the limit of {max_bytes} bytes",
                size=length, limit=max_bytes,
            )
        found = {"bucket": bucket, "key": key, "version_id": response.get("VersionId"),
                 "etag": str(response.get("ETag", ""))}
        if spool:
            digest, file = hashlib.sha256(), tempfile.TemporaryFile()
            for block in response["Body"].iter_chunks(SPOOL_BLOCK_BYTES):
                digest.update(block)
                file.write(block)
            size = file.tell()
            file.seek(0)
            return StoredObject(**found, sha256=digest.hexdigest(), data=file, size=size)
        data = response["Body"].read()
        return StoredObject(**found, sha256=sha256_hex(data), data=data)


class ArtifactStore:
    """Models under `models/sha256/<hex>`, holdouts and profiles under `artifacts/sha256/<hex>`; loads refuse
    altered bytes."""

    def __init__(self, bucket: str, objects: ObjectStore | None = None) -> None:
        self.bucket = bucket
        self.objects = objects or S3ObjectStore()

    @staticmethod
    def key_for(sha256: str) -> str:
        """The key of training-derived data (and of models stored before the prefixes were split)."""
        return f"{ARTIFACT_PREFIX}{sha256}"

    @staticmethod
    def model_key_for(sha256: str) -> str:
        return f"{MODEL_PREFIX}{sha256}"

    def put(self, data: bytes, kind: str, metadata: dict[str, str] | None = None,
            content_type: str = "application/octet-stream") -> ArtifactRef:
        """Store `data` under its sha256: a `model/...` kind under the models prefix, anything else under the data
        prefix."""
        digest = sha256_hex(data)
        meta = {"kind": kind, "sha256": digest, **(metadata or {})}
        key = self.model_key_for(digest) if kind.startswith(MODEL_KIND_PREFIX) else self.key_for(digest)
        self.objects.put(self.bucket, key, data, meta, content_type)
        return ArtifactRef(bucket=self.bucket, key=key, sha256=digest, size=len(data))

    def put_json(self, document: Any, kind: str, metadata: dict[str, str] | None = None) -> ArtifactRef:
        return self.put(orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY),
                        kind, metadata, "application/json")

    def get_model(self, sha256: str, legacy: bool = True) -> bytes:
        """The model stored under `sha256` (IntegrityError if its bytes hash to anything else;
        ArtifactNotFoundError if absent). `legacy`: look under the data prefix too, where models were stored
        before the prefixes were split (only roles that may read training data get there)."""
        try:
            return self._verified(self.model_key_for(sha256), sha256)
        except ArtifactNotFoundError:
            if not legacy:
                raise
        return self._verified(self.key_for(sha256), sha256)

    def get(self, sha256: str) -> bytes:
        """The training-derived bytes stored under `sha256`, or IntegrityError if they hash to anything else."""
        return self._verified(self.key_for(sha256), sha256)

    def _verified(self, key: str, sha256: str) -> bytes:
        stored = self.objects.get(self.bucket, key)
        if stored.sha256 != sha256:
            raise IntegrityError(
                f"artifact {sha256} in s3://{self.bucket} was altered: its bytes hash to {stored.sha256}",
                expected=sha256, actual=stored.sha256,
            )
        return stored.data

    def get_json(self, sha256: str) -> Any:
        return orjson.loads(self.get(sha256))

