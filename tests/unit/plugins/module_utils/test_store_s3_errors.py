# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""S3Store: botocore errors become StoreErrors that say what to check; option checks.  Pure logic:
the errors are built directly, no server is contacted."""

from __future__ import annotations

import botocore.exceptions
import pytest

from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, StoreError
from ansible_collections.runbook.ops.plugins.module_utils._store import S3Store, store_from_params

ENDPOINT = "http://127.0.0.1:1"


def make(**kwargs):
    options = {"bucket": "backups", "prefix": "prod", "endpoint_url": ENDPOINT, "access_key": "testing",
               "secret_key": "testing"}
    options.update(kwargs)
    return S3Store(**options)


def client_error(code, status=400, operation="GetObject"):
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "message of %s" % code}, "ResponseMetadata": {"HTTPStatusCode": status}},
        operation)


@pytest.mark.parametrize("exc, fragments", [
    (client_error("NoSuchBucket", 404), ["bucket 'backups' does not exist at " + ENDPOINT]),
    (client_error("NoSuchKey", 404), ["backup object s3://backups/prod/svc/a.zst does not exist"]),
    (client_error("404", 404, "HeadObject"), ["does not exist"]),
    (client_error("AccessDenied", 403), ["S3 refused to read s3://backups/prod/svc/a.zst (AccessDenied)",
                                         "check the store credentials"]),
    (client_error("SignatureDoesNotMatch", 403), ["refused", "SignatureDoesNotMatch"]),
    (client_error("", 403), ["refused", "403"]),
    (client_error("SlowDown", 503), ["S3 error while trying to read", "SlowDown"]),
    (botocore.exceptions.NoCredentialsError(), ["no S3 credentials", "store.access_key"]),
    (botocore.exceptions.EndpointConnectionError(endpoint_url=ENDPOINT),
     ["cannot reach the S3 endpoint " + ENDPOINT, "read s3://backups/prod/svc/a.zst"]),
    (botocore.exceptions.ReadTimeoutError(endpoint_url=ENDPOINT), ["cannot reach the S3 endpoint"]),
    (botocore.exceptions.ConnectTimeoutError(endpoint_url=ENDPOINT), ["cannot reach the S3 endpoint"]),
    (botocore.exceptions.ConnectionClosedError(endpoint_url=ENDPOINT), ["cannot reach the S3 endpoint"]),
    (botocore.exceptions.ParamValidationError(report="bad"), ["S3 error while trying to read"]),
])
def test_error_mapping(exc, fragments):
    error = make()._error(exc, "read", "svc/a.zst")  # pylint: disable=protected-access
    assert isinstance(error, StoreError)
    for fragment in fragments:
        assert fragment in str(error), str(error)


def test_error_mapping_without_key_names_the_bucket():
    error = make()._error(client_error("AccessDenied", 403), "list", None)  # pylint: disable=protected-access
    assert "s3://backups " in str(error) + " "


def test_other_exceptions_pass_through():
    original = RuntimeError("not a botocore error")
    assert make()._error(original, "read", "k") is original  # pylint: disable=protected-access


@pytest.mark.parametrize("prefix", ["/abs", "a//b", "../up", "a/../b", "./a", ".", "a/./b", "//"])
def test_bad_prefix_is_refused(prefix):
    with pytest.raises(ParameterError, match="store.prefix"):
        make(prefix=prefix)


@pytest.mark.parametrize("prefix, stored", [("", ""), ("prod", "prod"), ("prod/", "prod"), ("a/b", "a/b")])
def test_good_prefixes(prefix, stored):
    store = make(prefix=prefix)
    assert store.prefix == stored
    assert store.location("svc/x") == "s3://backups/%s" % ("%s/svc/x" % stored if stored else "svc/x")


@pytest.mark.parametrize("option, value", [("connect_timeout", 0), ("read_timeout", -1), ("retries", -1),
                                           ("partial_max_age", 0)])
def test_bad_timeouts_are_refused(option, value):
    with pytest.raises(ParameterError, match="store.%s" % option):
        make(**{option: value})


def test_timeouts_and_retries_reach_botocore():
    store = store_from_params({"type": "s3", "bucket": "b", "endpoint_url": ENDPOINT, "access_key": "x",
                               "secret_key": "y", "connect_timeout": 2, "read_timeout": 3, "retries": 1,
                               "partial_max_age": 600})
    config = store._client.meta.config  # pylint: disable=protected-access
    assert (config.connect_timeout, config.read_timeout) == (2, 3)
    assert config.retries["total_max_attempts"] == 2
    assert store.partial_max_age == 600


def test_defaults_when_options_are_absent():
    store = store_from_params({"type": "s3", "bucket": "b", "endpoint_url": ENDPOINT})
    config = store._client.meta.config  # pylint: disable=protected-access
    assert (config.connect_timeout, config.read_timeout, config.retries["total_max_attempts"]) == (10, 60, 4)
