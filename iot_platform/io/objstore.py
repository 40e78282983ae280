"""Where the lake lives: ``IOT_LAKE_URL``, and the object-store settings of an ``s3://`` lake.

``IOT_LAKE_URL`` unset (or a local path) keeps the local lake under
``$IOT_DATA_DIR/lake``; ``s3://bucket/prefix`` puts the lake's tables under that
prefix of an S3-compatible store, configured by the usual variables:
``AWS_ENDPOINT_URL`` (any S3-compatible server; unset: AWS itself),
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``. The
variables are read here, at the edge; the lake code receives an
:class:`ObjectStore` value.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping

import pyarrow.fs as pafs

LAKE_URL_ENV = "IOT_LAKE_URL"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


class LakeUrlError(ValueError):
    """A lake URL or an object-store setting that cannot be used (the message says why)."""


@dataclasses.dataclass(frozen=True)
class ObjectStore:
    """One bucket/prefix of an S3-compatible store and the credentials to reach it."""

    bucket: str
    prefix: str  # without leading or trailing "/"; may be ""
    endpoint: str | None
    access_key: str | None
    secret_key: str | None
    region: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def table_url(self, table: str) -> str:
        return f"{self.url}/{table}"

    def storage_options(self) -> dict[str, str]:
        """The options of the ``deltalake`` package (its object_store layer) for this store."""
        opts = {"AWS_REGION": self.region}
        if self.endpoint:
            opts["AWS_ENDPOINT_URL"] = self.endpoint
            if self.endpoint.startswith("http://"):
                opts["AWS_ALLOW_HTTP"] = "true"
        if self.access_key:
            opts["AWS_ACCESS_KEY_ID"] = self.access_key
        if self.secret_key:
            opts["AWS_SECRET_ACCESS_KEY"] = self.secret_key
        return opts

    def filesystem(self) -> pafs.FileSystem:
        """pyarrow's S3 filesystem, confined to this bucket/prefix (paths are relative to it)."""
        scheme = "http" if (self.endpoint or "").startswith("http://") else "https"
        s3 = pafs.S3FileSystem(
            access_key=self.access_key, secret_key=self.secret_key, region=self.region,
            endpoint_override=self.endpoint, scheme=scheme,
        )  # fmt: skip
        return pafs.SubTreeFileSystem(f"{self.bucket}/{self.prefix}".rstrip("/"), s3)


def parse_lake_url(url: str, env: Mapping[str, str]) -> ObjectStore | None:
    """The object store of ``url`` (None: a local lake), with its settings from ``env``."""
    if "://" not in url:
        # a local lake always lives under the data root: a path here would be silently ignored
        raise LakeUrlError(
            f"{LAKE_URL_ENV}={url!r} is not supported; expected s3://bucket/prefix (a local lake is "
            f"$IOT_DATA_DIR/lake: set IOT_DATA_DIR instead, and leave {LAKE_URL_ENV} unset)"
        )
    scheme, rest = url.split("://", 1)
    if scheme != "s3":
        raise LakeUrlError(f"{LAKE_URL_ENV}={url!r} is not supported; expected s3://bucket/prefix or a local path")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.match(bucket):
        raise LakeUrlError(
            f"{LAKE_URL_ENV}={url!r}: bucket {bucket!r} is invalid; expected 3-63 lower-case letters, digits, '.' or '-'"
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise LakeUrlError(f"{LAKE_URL_ENV}={url!r}: prefix {prefix!r} has an empty, '.' or '..' segment")
    access, secret = env.get("AWS_ACCESS_KEY_ID") or None, env.get("AWS_SECRET_ACCESS_KEY") or None
    if (access is None) != (secret is None):
        missing = "AWS_SECRET_ACCESS_KEY" if secret is None else "AWS_ACCESS_KEY_ID"
        raise LakeUrlError(f"{missing} is not set; an s3:// lake needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    endpoint = env.get("AWS_ENDPOINT_URL") or None
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise LakeUrlError(f"AWS_ENDPOINT_URL={endpoint!r} is invalid; expected http://host:port or https://host")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    return ObjectStore(bucket, prefix, endpoint, access, secret, region)


def lake_store_from_env(env: Mapping[str, str] | None = None) -> ObjectStore | None:
    """The object store ``IOT_LAKE_URL`` names, or None for the local lake."""
    env = os.environ if env is None else env
    url = env.get(LAKE_URL_ENV) or ""
    return parse_lake_url(url, env) if url else None
