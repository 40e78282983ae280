"""IOT_LAKE_URL and the AWS_* variables: what is accepted, and the one-line refusals."""

from __future__ import annotations

import pytest

from iot_platform.io.objstore import LakeUrlError, ObjectStore, lake_store_from_env

ENV = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}


def test_unset_is_the_local_lake_and_a_local_path_is_refused_not_ignored():
    assert lake_store_from_env({}) is None
    with pytest.raises(LakeUrlError) as e:
        lake_store_from_env({"IOT_LAKE_URL": "/srv/lake"})
    assert str(e.value) == (
        "IOT_LAKE_URL='/srv/lake' is not supported; expected s3://bucket/prefix (a local lake is "
        "$IOT_DATA_DIR/lake: set IOT_DATA_DIR instead, and leave IOT_LAKE_URL unset)"
    )


def test_an_s3_url_with_its_settings():
    store = lake_store_from_env({**ENV, "IOT_LAKE_URL": "s3://iot-lake/prod/lake/", "AWS_REGION": "eu-west-1"})
    assert store == ObjectStore("iot-lake", "prod/lake", "http://127.0.0.1:9000", "k", "s", "eu-west-1")
    assert store.table_url("readings") == "s3://iot-lake/prod/lake/readings"
    assert store.storage_options() == {
        "AWS_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
    }  # fmt: skip
    assert lake_store_from_env({"IOT_LAKE_URL": "s3://iot-lake"}).region == "us-east-1"


@pytest.mark.parametrize(
    "env, message",
    [
        ({"IOT_LAKE_URL": "gs://b/p"}, "IOT_LAKE_URL='gs://b/p' is not supported; expected s3://bucket/prefix or a local path"),
        ({"IOT_LAKE_URL": "s3://Bad_Bucket/p"}, "IOT_LAKE_URL='s3://Bad_Bucket/p': bucket 'Bad_Bucket' is invalid; expected 3-63 lower-case letters, digits, '.' or '-'"),
        ({"IOT_LAKE_URL": "s3://bucket/a/../b"}, "IOT_LAKE_URL='s3://bucket/a/../b': prefix 'a/../b' has an empty, '.' or '..' segment"),
        ({"IOT_LAKE_URL": "s3://bucket/p", "AWS_ACCESS_KEY_ID": "k"}, "AWS_SECRET_ACCESS_KEY is not set; an s3:// lake needs both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
        ({**ENV, "IOT_LAKE_URL": "s3://bucket/p", "AWS_ENDPOINT_URL": "127.0.0.1:9000"}, "AWS_ENDPOINT_URL='127.0.0.1:9000' is invalid; expected http://host:port or https://host"),
    ],
)  # fmt: skip
def test_refusals_name_the_value(env, message):
    with pytest.raises(LakeUrlError) as exc:
        lake_store_from_env(env)
    assert str(exc.value) == message
