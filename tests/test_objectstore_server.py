"""The test S3 server (tests/servers/s3.py) is real, and honours what the remote lake relies on."""

from __future__ import annotations

import botocore.exceptions
import pytest

pytestmark = pytest.mark.objectstore


def _code(exc: botocore.exceptions.ClientError) -> tuple[str, int]:
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def test_conditional_put_create_only_and_compare_and_swap(s3_server, s3_lake_url):
    s3 = s3_server.client()
    key = s3_lake_url.split("/", 3)[3] + "/x"
    first = s3.put_object(Bucket=s3_server.bucket, Key=key, Body=b"one", IfNoneMatch="*")
    with pytest.raises(botocore.exceptions.ClientError) as exists:
        s3.put_object(Bucket=s3_server.bucket, Key=key, Body=b"two", IfNoneMatch="*")
    assert _code(exists.value) == ("PreconditionFailed", 412)
    s3.put_object(Bucket=s3_server.bucket, Key=key, Body=b"three", IfMatch=first["ETag"])
    with pytest.raises(botocore.exceptions.ClientError) as stale:
        s3.put_object(Bucket=s3_server.bucket, Key=key, Body=b"four", IfMatch=first["ETag"])
    assert _code(stale.value) == ("PreconditionFailed", 412)
    assert s3.get_object(Bucket=s3_server.bucket, Key=key)["Body"].read() == b"three"


def test_wrong_secret_is_refused(s3_server):
    import boto3

    bad = boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id=s3_server.access_key,
                       aws_secret_access_key="not-the-secret", region_name=s3_server.region)  # fmt: skip
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        bad.list_objects_v2(Bucket=s3_server.bucket)
    assert _code(refused.value) == ("SignatureDoesNotMatch", 403)
