# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Backup stores: a directory on the host or an S3 bucket, behind one small interface.

``put_stream`` is atomic in both: a local object is written to a hidden temporary file and
renamed into place; an S3 object is a multipart upload that is completed only after the
reader ended cleanly (and aborted otherwise).  Readers are never held in memory whole.
"""

from __future__ import annotations

import concurrent.futures
import errno
import os
import posixpath
import secrets
from dataclasses import dataclass

from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, StoreError
from ansible_collections.runbook.ops.plugins.module_utils._streams import CHUNK_SIZE

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:
    boto3 = None

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
# Measured (bench/README.md): 8 MiB parts, two in flight keep the module under 150 MB with no loss of speed.
S3_PART_SIZE = 8 << 20
S3_PARTS_IN_FLIGHT = 2


@dataclass
class StoredObject:
    key: str
    size: int
    modified: float  # seconds since the epoch


class BackupStore:
    """What a store can do.  Keys are relative, '/'-separated names."""

    kind = "abstract"

    def put_stream(self, key, reader):
        """Store everything ``reader`` yields under ``key``, atomically; returns the size."""
        raise NotImplementedError

    def put_bytes(self, key, data):
        raise NotImplementedError

    def open(self, key):
        """A reader (``read(size)``, ``close()``) over the object's bytes."""
        raise NotImplementedError

    def read_bytes(self, key):
        reader = self.open(key)
        try:
            chunks = []
            while True:
                data = reader.read(CHUNK_SIZE)
                if not data:
                    return b"".join(chunks)
                chunks.append(data)
        finally:
            reader.close()

    def list(self, prefix):
        """Every object whose key starts with ``prefix`` (a folder, ending in '/')."""
        raise NotImplementedError

    def delete(self, key):
        raise NotImplementedError

    def location(self, key):
        """Where an object is, for people: a path or an s3:// URL."""
        raise NotImplementedError

    def check_access(self, write):
        """Raise StoreError when the store cannot be read (or written, if ``write``)."""
        raise NotImplementedError


def check_key(key):
    parts = key.rstrip("/").split("/")
    if key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ParameterError("invalid store key %r" % key)
    return key


class LocalStore(BackupStore):
    """Backups in a directory on the managed host; directories 0700, files 0600."""

    kind = "local"

    def __init__(self, root):
        if not root or not os.path.isabs(root):
            raise ParameterError("store.path must be an absolute directory path, got %r" % (root,))
        self.root = os.path.normpath(root)

    def _path(self, key):
        return os.path.join(self.root, *check_key(key).split("/"))

    def location(self, key):
        return self._path(key)

    def _makedirs(self, directory):
        # os.makedirs applies ``mode`` to the last level only; every level we create is private.
        missing, level = [], directory
        while level and not os.path.isdir(level):
            missing.append(level)
            level = os.path.dirname(level)
        try:
            for path in reversed(missing):
                try:
                    os.mkdir(path, PRIVATE_DIR)
                except FileExistsError:
                    if not os.path.isdir(path):
                        raise
        except OSError as exc:
            raise StoreError("cannot create backup directory %s: %s" % (directory, exc.strerror)) from None

    def put_stream(self, key, reader):
        path = self._path(key)
        directory, name = os.path.split(path)
        self._makedirs(directory)
        # Hidden and uniquely named: listings skip it, and concurrent writers never collide.
        temp = os.path.join(directory, ".%s.partial-%s" % (name, secrets.token_hex(4)))
        size = 0
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
            with os.fdopen(fd, "wb") as handle:
                while True:
                    data = reader.read(CHUNK_SIZE)
                    if not data:
                        break
                    handle.write(data)
                    size += len(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, path)
            _fsync_dir(directory)
        except OSError as exc:
            _unlink_quietly(temp)
            if exc.errno == errno.ENOSPC:
                raise StoreError("no space left on device while writing %s" % path) from None
            raise StoreError("cannot write %s: %s" % (path, exc.strerror or exc)) from None
        except BaseException:
            _unlink_quietly(temp)
            raise
        return size

    def put_bytes(self, key, data):
        return self.put_stream(key, _BytesReader(data))

    def open(self, key):
        path = self._path(key)
        try:
            return open(path, "rb")  # pylint: disable=consider-using-with
        except FileNotFoundError:
            raise StoreError("backup object %s does not exist" % path) from None
        except OSError as exc:
            raise StoreError("cannot read %s: %s" % (path, exc.strerror)) from None

    def list(self, prefix):
        directory = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError("cannot list %s: %s" % (directory, exc.strerror)) from None
        found = []
        for name in names:
            if name.startswith("."):
                continue
            try:
                info = os.stat(os.path.join(directory, name))
            except FileNotFoundError:  # deleted by a concurrent retention run
                continue
            if os.path.isfile(os.path.join(directory, name)):
                found.append(StoredObject(prefix + name, info.st_size, info.st_mtime))
        return found

    def delete(self, key):
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError("cannot delete %s: %s" % (self._path(key), exc.strerror)) from None

    def check_access(self, write):
        probe = self.root
        while not os.path.exists(probe):
            probe = os.path.dirname(probe)
        if not os.path.isdir(probe):
            raise StoreError("backup store path %s is not a directory" % probe)
        mode = os.W_OK | os.X_OK if write else os.R_OK | os.X_OK
        if not os.access(probe, mode):
            raise StoreError("backup store directory %s is not %s" % (probe, "writable" if write else "readable"))


class _BytesReader:
    def __init__(self, data):
        self._data = memoryview(data)
        self._pos = 0

    def read(self, size=CHUNK_SIZE):
        chunk = self._data[self._pos:self._pos + size]
        self._pos += len(chunk)
        return bytes(chunk)


def _fsync_dir(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class S3Store(BackupStore):
    """Backups in an S3 bucket (AWS or any S3-compatible endpoint).

    The client retries with jittered exponential backoff (botocore's standard mode) here and
    nowhere else; every library error becomes a StoreError that says what to check.
    """

    kind = "s3"

    def __init__(self, bucket, prefix="", endpoint_url=None, region=None, access_key=None,
                 secret_key=None, session_token=None, profile=None, sse=None, kms_key_id=None,
                 validate_certs=True, connect_timeout=10, read_timeout=60, max_attempts=4):
        if not bucket:
            raise ParameterError("store.bucket is required for an s3 store")
        if boto3 is None:
            raise StoreError("the s3 store needs the Python library boto3 on the managed host")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._extra = {}
        if sse:
            self._extra["ServerSideEncryption"] = sse
            if kms_key_id:
                self._extra["SSEKMSKeyId"] = kms_key_id
        config = botocore.config.Config(
            retries={"max_attempts": max_attempts, "mode": "standard"},
            connect_timeout=connect_timeout, read_timeout=read_timeout)
        try:
            session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
            self._client = session.client(
                "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
                aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                aws_session_token=session_token, verify=validate_certs, config=config)
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise StoreError("cannot set up the S3 client: %s" % exc) from None

    def _key(self, key):
        check_key(key)
        return posixpath.join(self.prefix, key) if self.prefix else key

    def location(self, key):
        return "s3://%s/%s" % (self.bucket, self._key(key))

    def _error(self, exc, action, key=None):
        """Turn a botocore error into a StoreError that tells the on-call what is wrong."""
        where = self.location(key) if key else "s3://%s" % self.bucket
        endpoint = self.endpoint_url or "AWS S3"
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return StoreError("no S3 credentials: set store.access_key and store.secret_key, a profile, or "
                              "the AWS_* environment of the managed host")
        if isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError,
                            botocore.exceptions.ConnectionClosedError, botocore.exceptions.ReadTimeoutError)):
            return StoreError("cannot reach the S3 endpoint %s while trying to %s %s: %s"
                              % (endpoint, action, where, exc))
        if isinstance(exc, botocore.exceptions.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return StoreError("S3 bucket %r does not exist at %s" % (self.bucket, endpoint))
            if code in ("NoSuchKey", "404", "NotFound"):
                return StoreError("backup object %s does not exist" % where)
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                        "AccessDenied", "AllAccessDisabled", "403") or status == 403:
                return StoreError("S3 refused to %s %s (%s): check the store credentials and the bucket policy"
                                  % (action, where, code or status))
            return StoreError("S3 error while trying to %s %s: %s %s" % (action, where, code, exc))
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return StoreError("S3 error while trying to %s %s: %s" % (action, where, exc))
        return exc

    def put_bytes(self, key, data):
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self._extra)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "write", key) from None
        return len(data)

    def put_stream(self, key, reader):
        first = _read_exactly(reader, S3_PART_SIZE)
        if len(first) < S3_PART_SIZE:
            return self.put_bytes(key, first)
        return self._multipart(key, reader, first)

    def _multipart(self, key, reader, first):
        full_key = self._key(key)
        try:
            upload_id = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=full_key, **self._extra)["UploadId"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "write", key) from None
        parts, size = [], 0
        try:
            # A few parts upload while the next is read: bounded memory, overlapped I/O.
            with concurrent.futures.ThreadPoolExecutor(max_workers=S3_PARTS_IN_FLIGHT) as pool:
                pending = []
                number, data = 1, first
                while data:
                    size += len(data)
                    pending.append(pool.submit(self._client.upload_part, Bucket=self.bucket, Key=full_key,
                                               UploadId=upload_id, PartNumber=number, Body=data))
                    if len(pending) >= S3_PARTS_IN_FLIGHT:
                        parts.append(pending.pop(0).result()["ETag"])
                    number += 1
                    data = _read_exactly(reader, S3_PART_SIZE)
                parts.extend(future.result()["ETag"] for future in pending)
            self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": i + 1} for i, etag in enumerate(parts)]})
        except BaseException as exc:
            self._abort(full_key, upload_id)
            if isinstance(exc, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
                raise self._error(exc, "write", key) from None
            raise
        return size

    def _abort(self, full_key, upload_id):
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)
        except Exception:  # pylint: disable=broad-except
            pass  # the original error matters more; S3 lifecycle rules reap stale uploads

    def open(self, key):
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "read", key) from None
        return _S3Reader(body, self, key)

    def list(self, prefix):
        found = []
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/")) + "/"):
                for item in page.get("Contents", []):
                    relative = item["Key"][len(self.prefix) + 1:] if self.prefix else item["Key"]
                    found.append(StoredObject(relative, item["Size"], item["LastModified"].timestamp()))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "list", prefix) from None
        return found

    def delete(self, key):
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "delete", key) from None

    def check_access(self, write):
        try:
            self._client.head_bucket(Bucket=self.bucket)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            if isinstance(exc, botocore.exceptions.ClientError) and \
                    exc.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise StoreError("S3 bucket %r does not exist at %s"
                                 % (self.bucket, self.endpoint_url or "AWS S3")) from None
            raise self._error(exc, "access", None) from None


class _S3Reader:
    """A streaming S3 body whose network errors become StoreErrors."""

    def __init__(self, body, store, key):
        self._body = body
        self._store = store
        self._key = key

    def read(self, size=CHUNK_SIZE):
        try:
            return self._body.read(size)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._store._error(exc, "read", self._key) from None  # pylint: disable=protected-access

    def close(self):
        self._body.close()


def _read_exactly(reader, size):
    """Read up to ``size`` bytes, fewer only at the end of the stream."""
    chunks, have = [], 0
    while have < size:
        data = reader.read(min(CHUNK_SIZE, size - have))
        if not data:
            break
        chunks.append(data)
        have += len(data)
    return b"".join(chunks)


def store_from_params(params):
    """Build a store from the ``store`` option of a module (see the runbook.ops.store doc fragment)."""
    kind = params.get("type")
    if kind == "local":
        return LocalStore(params.get("path"))
    if kind == "s3":
        return S3Store(
            bucket=params.get("bucket"), prefix=params.get("prefix") or "",
            endpoint_url=params.get("endpoint_url"), region=params.get("region"),
            access_key=params.get("access_key"), secret_key=params.get("secret_key"),
            session_token=params.get("session_token"), profile=params.get("profile"),
            sse=params.get("sse"), kms_key_id=params.get("kms_key_id"),
            validate_certs=params.get("validate_certs", True))
    raise ParameterError("store.type must be 'local' or 's3', got %r" % (kind,))
