# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  store:
    description:
      - Where backups live. Objects are named C(<prefix>/<service>/<id>.<ext>), each beside its
        C(.manifest.json); a data object without a manifest is an incomplete backup.
    type: dict
    required: true
    suboptions:
      type:
        description:
          - V(local) is a directory on the managed host (directories are created with mode 0700, files 0600).
          - V(s3) is an S3 bucket on AWS or any S3-compatible endpoint.
        type: str
        required: true
        choices: [local, s3]
      path:
        description: Absolute directory of a V(local) store. Required when O(store.type=local).
        type: path
      bucket:
        description: Bucket of an V(s3) store. Required when O(store.type=s3).
        type: str
      prefix:
        description:
          - Key prefix inside the bucket, a relative name such as C(backups/prod).
          - Refused when it starts with C(/) or has an empty, C(.) or C(..) part (C(a//b), C(../x)),
            as the names of a V(local) store are.
        type: str
        default: ''
      endpoint_url:
        description: URL of an S3-compatible endpoint (MinIO, Ceph, moto). Omit for AWS.
        type: str
      region:
        description: Region of the bucket. Defaults to C(us-east-1).
        type: str
      access_key:
        description:
          - Access key id. When omitted, boto3 looks in the environment, the profile and the instance role.
        type: str
      secret_key:
        description: Secret access key. Never shown in output.
        type: str
      session_token:
        description: Session token of temporary credentials. Never shown in output.
        type: str
      profile:
        description: Named profile of the AWS configuration files of the managed host.
        type: str
      sse:
        description: Server-side encryption of uploaded objects.
        type: str
        choices: [AES256, 'aws:kms']
      kms_key_id:
        description: KMS key for O(store.sse=aws:kms).
        type: str
      validate_certs:
        description: Verify the TLS certificate of the endpoint.
        type: bool
        default: true
      connect_timeout:
        description:
          - Seconds to wait for a connection to the S3 endpoint before a try counts as failed.
        type: int
        default: 10
      read_timeout:
        description:
          - Seconds to wait for the S3 endpoint to answer a request (or send the next bytes) before a
            try counts as failed.
          - An endpoint that stops answering fails the task after about
            (O(store.retries) + 1) times this per request; a running dump is then stopped and its
            snapshot released.
        type: int
        default: 60
      retries:
        description:
          - How many times a failed S3 request is tried again, with jittered exponential backoff.
        type: int
        default: 3
      partial_max_age:
        description:
          - Age in seconds after which a write that was never finished counts as abandoned.
          - A process killed outright (SIGKILL, power cut) cannot clean up after itself; the next
            write into the same folder removes hidden C(.*.partial-*) files of a V(local) store and
            aborts unfinished multipart uploads of an V(s3) store older than this.
          - Keep it longer than the longest backup, so that one still running is never touched.
        type: int
        default: 86400
"""
