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
import datetime
import errno
import os
import posixpath
from dataclasses import dataclass

from ansible_collections.runbook.ops.plugins.module_utils._errors import ParameterError, StoreError
from ansible_collections.runbook.ops.plugins.module_utils._files import (
    PRIVATE_FILE, atomic_write, make_private_dirs, sweep_partials)
from ansible_collections.runbook.ops.plugins.module_utils._streams import CHUNK_SIZE

try:
    import boto3
    import botocore.config
    import botocore.exceptions
except ImportError:
    boto3 = None

# Leftovers of a writer that died without cleaning up (SIGKILL, power cut) are removed by a
# later write into the same folder once older than this: longer than any backup runs.
PARTIAL_MAX_AGE = 86400
S3_CONNECT_TIMEOUT = 10
S3_READ_TIMEOUT = 60
S3_RETRIES = 3
# Measured (bench/README.md): 8 MiB parts, two in flight keep the module under 150 MB with no loss of speed.
S3_PART_SIZE = 8 << 20
S3_PARTS_IN_FLIGHT = 2


@dataclass
class StoredObject:
    key: str
    size: int
    modified: float  # seconds since the epoch
    etag: str = ""  # S3 only: changes whenever the object is written (not an MD5 for multipart uploads)


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

    def missing(self):
        """Why the store itself does not exist (a sentence), or None; an empty listing of a
        store that does not exist is not "no backups yet"."""
        return None


def check_key(key, what="store key"):
    """A relative '/'-separated name (one trailing '/' allowed): no leading '/', no empty,
    '.' or '..' part.  The one rule for object keys and the S3 prefix alike."""
    parts = (key[:-1] if key.endswith("/") else key).split("/")
    if key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ParameterError("invalid %s %r: it must be a relative name without empty, '.' or '..' parts"
                             % (what, key))
    return key


def check_partial_max_age(seconds):
    if seconds is None or seconds <= 0:
        raise ParameterError("store.partial_max_age must be a positive number of seconds (longer than any backup "
                             "runs), got %r" % (seconds,))
    return seconds


class LocalStore(BackupStore):
    """Backups in a directory on the managed host; directories 0700, files 0600."""

    kind = "local"

    def __init__(self, root, partial_max_age=PARTIAL_MAX_AGE):
        if not root or not os.path.isabs(root):
            raise ParameterError("store.path must be an absolute directory path, got %r" % (root,))
        self.root = os.path.normpath(root)
        self.partial_max_age = check_partial_max_age(partial_max_age)
        self.swept = []

    def _path(self, key):
        return os.path.join(self.root, *check_key(key).split("/"))

    def location(self, key):
        return self._path(key)

    def put_stream(self, key, reader):
        path = self._path(key)
        directory = os.path.dirname(path)
        try:
            make_private_dirs(directory)
        except OSError as exc:
            raise StoreError("cannot create backup directory %s: %s" % (directory, exc.strerror)) from None
        try:
            self.swept += sweep_partials(directory, self.partial_max_age)
        except OSError:
            pass  # best effort: a leftover we cannot remove must not stop this backup
        try:
            return atomic_write(path, reader=reader, mode=PRIVATE_FILE, keep_attributes=False)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise StoreError("no space left on device while writing %s" % path) from None
            raise StoreError("cannot write %s: %s" % (path, exc.strerror or exc)) from None

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
            return []  # nothing written yet (backup_info checks first that the store itself exists)
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

    def missing(self):
        if os.path.isdir(self.root):
            return None
        if os.path.exists(self.root):
            return "backup store path %s is not a directory" % self.root
        return "backup store directory %s does not exist" % self.root

    def check_access(self, write):
        if not write and not os.path.isdir(self.root):
            raise StoreError("backup store directory %s does not exist" % self.root
                             if not os.path.exists(self.root) else "backup store path %s is not a directory" % self.root)
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


class S3Store(BackupStore):
    """Backups in an S3 bucket (AWS or any S3-compatible endpoint).

    The client retries with jittered exponential backoff (botocore's standard mode) here and
    nowhere else; every library error becomes a StoreError that says what to check.
    """

    kind = "s3"

    def __init__(self, bucket, prefix="", endpoint_url=None, region=None, access_key=None,
                 secret_key=None, session_token=None, profile=None, sse=None, kms_key_id=None,
                 validate_certs=True, connect_timeout=S3_CONNECT_TIMEOUT, read_timeout=S3_READ_TIMEOUT,
                 retries=S3_RETRIES, partial_max_age=PARTIAL_MAX_AGE, max_pool_connections=10):
        if not bucket:
            raise ParameterError("store.bucket is required for an s3 store")
        if boto3 is None:
            raise StoreError("the s3 store needs the Python library boto3 on the managed host")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if value is None or value <= 0:
                raise ParameterError("store.%s must be a positive number of seconds, got %r" % (name, value))
        if retries is None or retries < 0:
            raise ParameterError("store.retries must be 0 or more, got %r" % (retries,))
        check_partial_max_age(partial_max_age)
        self.bucket = bucket
        self.prefix = check_key(prefix, "store.prefix").rstrip("/") if prefix else ""
        self.endpoint_url = endpoint_url
        self.partial_max_age = partial_max_age
        self.swept = []
        self._swept_folders = set()
        self._extra = {}
        if sse:
            self._extra["ServerSideEncryption"] = sse
            if kms_key_id:
                self._extra["SSEKMSKeyId"] = kms_key_id
        # Bounded waits: a frozen endpoint fails the backup after about
        # (retries + 1) x (connect_timeout or read_timeout) per request instead of blocking it.
        config = botocore.config.Config(
            retries={"total_max_attempts": retries + 1, "mode": "standard"},
            connect_timeout=connect_timeout, read_timeout=read_timeout,
            max_pool_connections=max_pool_connections)  # >= the threads that share the client
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
        self._put_object(key, data)
        return len(data)

    def _put_object(self, key, data, metadata=None):
        extra = dict(self._extra, Metadata=metadata) if metadata else self._extra
        try:
            return self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **extra)["ETag"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "write", key) from None

    def sweep_uploads(self, key):
        """Abort multipart uploads in ``key``'s folder older than ``partial_max_age``: what a
        writer killed by SIGKILL left (a finished or aborted upload leaves nothing).  Best
        effort: a policy without s3:ListBucketMultipartUploads just skips it."""
        folder = posixpath.dirname(self._key(key))
        if folder in self._swept_folders:
            return
        self._swept_folders.add(folder)
        limit = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=self.partial_max_age)
        try:
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=folder + "/" if folder else "")
            for page in pages:
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < limit:
                        self._abort(upload["Key"], upload["UploadId"])
                        self.swept.append("s3://%s/%s" % (self.bucket, upload["Key"]))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
            pass

    def put_stream(self, key, reader):
        return self.upload(key, reader)[0]

    def upload(self, key, reader, metadata=None):
        """put_stream with user metadata (``x-amz-meta-*``); returns (size, ETag)."""
        self.sweep_uploads(key)
        first = _read_exactly(reader, S3_PART_SIZE)
        if len(first) < S3_PART_SIZE:
            return len(first), self._put_object(key, first, metadata).strip('"')
        return self._multipart(key, reader, first, metadata)

    def _multipart(self, key, reader, first, metadata=None):  # pylint: disable=too-many-locals
        full_key = self._key(key)
        extra = dict(self._extra, Metadata=metadata) if metadata else self._extra
        try:
            upload_id = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=full_key, **extra)["UploadId"]
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
            etag = self._client.complete_multipart_upload(
                Bucket=self.bucket, Key=full_key, UploadId=upload_id,
                MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": i + 1} for i, etag in enumerate(parts)]}
            ).get("ETag", "")
        except BaseException as exc:
            self._abort(full_key, upload_id)
            if isinstance(exc, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
                raise self._error(exc, "write", key) from None
            raise
        return size, etag.strip('"')

    def _abort(self, full_key, upload_id):
        try:
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full_key, UploadId=upload_id)
        except Exception:  # pylint: disable=broad-except
            pass  # the original error matters more; S3 lifecycle rules reap stale uploads

    def open(self, key):
        """A reader whose ``info`` holds the object's size, ETag and user metadata."""
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "read", key) from None
        return _S3Reader(response["Body"], self, key, _object_info(response))

    def head(self, key):
        """{size, etag, metadata} of an object, or None when there is none."""
        try:
            return _object_info(self._client.head_object(Bucket=self.bucket, Key=self._key(key)))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            if isinstance(exc, botocore.exceptions.ClientError) and \
                    exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(exc, "read", key) from None

    def _folder(self, prefix):
        """The full key prefix of a folder of the store; '' is the whole store."""
        if prefix.strip("/"):
            return self._key(prefix.rstrip("/")) + "/"
        return self.prefix + "/" if self.prefix else ""

    def list(self, prefix):
        found = []
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._folder(prefix)):
                for item in page.get("Contents", []):
                    relative = item["Key"][len(self.prefix) + 1:] if self.prefix else item["Key"]
                    found.append(StoredObject(relative, item["Size"], item["LastModified"].timestamp(),
                                              item.get("ETag", "").strip('"')))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "list", prefix or None) from None
        return found

    def folders(self, prefix):
        """Names of the sub-folders directly in ``prefix`` ('' for the store's top)."""
        names = []
        folder = self._folder(prefix)
        try:
            for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=self.bucket, Prefix=folder, Delimiter="/"):
                names.extend(item["Prefix"][len(folder):].rstrip("/") for item in page.get("CommonPrefixes", []))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, "list", prefix or None) from None
        return names

    def delete_many(self, keys):
        """Delete objects 1000 per request (S3's limit)."""
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            try:
                response = self._client.delete_objects(
                    Bucket=self.bucket, Delete={"Objects": [{"Key": self._key(key)} for key in batch], "Quiet": True})
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                raise self._error(exc, "delete", batch[0]) from None
            errors = response.get("Errors") or []
            if errors:
                raise StoreError("S3 refused to delete %d object(s), first s3://%s/%s: %s %s"
                                 % (len(errors), self.bucket, errors[0].get("Key"), errors[0].get("Code"),
                                    errors[0].get("Message", "")))

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

    def __init__(self, body, store, key, info=None):
        self._body = body
        self._store = store
        self._key = key
        self.info = info or {}

    def read(self, size=CHUNK_SIZE):
        try:
            return self._body.read(size)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._store._error(exc, "read", self._key) from None  # pylint: disable=protected-access

    def close(self):
        self._body.close()


def _object_info(response):
    return {"size": response.get("ContentLength"), "etag": response.get("ETag", "").strip('"'),
            "metadata": response.get("Metadata") or {}}


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


def store_from_params(params, max_pool_connections=10):
    """Build a store from the ``store`` option of a module (see the runbook.ops.store doc fragment);
    ``max_pool_connections``: how many threads of the module share an S3 client."""
    kind = params.get("type")
    if kind == "local":
        return LocalStore(params.get("path"), partial_max_age=_get(params, "partial_max_age", PARTIAL_MAX_AGE))
    if kind == "s3":
        return S3Store(
            bucket=params.get("bucket"), prefix=params.get("prefix") or "",
            endpoint_url=params.get("endpoint_url"), region=params.get("region"),
            access_key=params.get("access_key"), secret_key=params.get("secret_key"),
            session_token=params.get("session_token"), profile=params.get("profile"),
            sse=params.get("sse"), kms_key_id=params.get("kms_key_id"),
            validate_certs=params.get("validate_certs", True),
            connect_timeout=_get(params, "connect_timeout", S3_CONNECT_TIMEOUT),
            read_timeout=_get(params, "read_timeout", S3_READ_TIMEOUT), retries=_get(params, "retries", S3_RETRIES),
            partial_max_age=_get(params, "partial_max_age", PARTIAL_MAX_AGE),
            max_pool_connections=max_pool_connections)
    raise ParameterError("store.type must be 'local' or 's3', got %r" % (kind,))


def _get(params, name, default):
    value = params.get(name)
    return default if value is None else value
