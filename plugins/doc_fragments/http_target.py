# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection, authentication, Host and TLS options shared by http_probe and metrics_probe."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r'''
options:
  method:
    description:
      - HTTP method. When not set here (nor on a target), V(GET).
    type: str
  headers:
    description:
      - Extra request headers. Their values are treated as secrets and never shown in results.
      - In M(runbook.ops.http_probe), merged with the headers of each target; the target's value wins for the same name.
    type: dict
  body:
    description:
      - Request body. A mapping or list is sent as JSON with C(Content-Type) V(application/json).
    type: raw
  host:
    description:
      - Send this C(Host) header (a name, optionally with C(:port)) while connecting to the address in the URL,
        like C(curl --resolve). Use it for services that check C(ALLOWED_HOSTS), or to probe one backend
        behind a load balancer.
      - For C(https) URLs the same name is used for SNI and for the certificate's hostname check.
    type: str
  timeout:
    description:
      - Seconds allowed for the whole request (connect, TLS, response headers and body). It is a deadline, so a
        server that sends its response slowly cannot hold the probe longer. Must be positive. When not set, V(10).
    type: float
  validate_certs:
    description:
      - Verify the server certificate (chain and hostname). When not set, V(true).
      - With V(false) the certificate is still read, so its expiry is still checked.
    type: bool
  ca_path:
    description:
      - A CA bundle file, or a directory of hashed CA certificates, to verify the server certificate with
        instead of the system store. Use it for private CAs and self-signed certificates.
    type: path
  api_token:
    description:
      - Sent as the C(X-Api-Token) header.
    type: str
  bearer_token:
    description:
      - "Sent as C(Authorization: Bearer <token>)."
    type: str
  metrics_secret:
    description:
      - Sent as the C(x-metrics-secret) header.
    type: str
notes:
  - Tokens, header values and URL passwords (C(https://user:pass@host/)) never appear in results or messages.
  - Redirects are not followed; list the redirect code in the expected statuses to accept one.
  - Only the Python standard library talks HTTP; C(https_proxy) and similar variables are not used.
'''
