# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""DATABASE_URL handling of _pg_roles (the server side is covered by tests/integration/rotation2)."""

from __future__ import annotations

import urllib.parse

import pytest

from ansible_collections.runbook.ops.plugins.module_utils._errors import RotationError
from ansible_collections.runbook.ops.plugins.module_utils._pg_roles import (
    url_credentials, url_database, url_with_credentials)


@pytest.mark.parametrize("password", ["plain", "p@ss:w/rd%+=?#[]", "ümlaut ünd spaces", "a'b\"c\\d"])
def test_credentials_round_trip_through_the_url(password):
    url = url_with_credentials("postgresql://old:oldpw@db.internal:6432/app?sslmode=require", "app_b", password)
    assert url.startswith("postgresql://app_b:") and url.endswith("@db.internal:6432/app?sslmode=require")
    assert url_credentials(url) == ("app_b", password)
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname == "db.internal" and parsed.port == 6432  # the password never leaks into the host part
    assert url_database(url) == "app"


def test_url_without_credentials_gets_them():
    assert url_with_credentials("postgres://127.0.0.1/app", "u", "p") == "postgres://u:p@127.0.0.1/app"
    assert url_credentials("postgres://127.0.0.1/app") == (None, None)
    assert url_database("postgresql://u:p@h") is None


@pytest.mark.parametrize("url", ["sqlite:////srv/app.db", "mysql://u:secretpw@h/db", "postgresql://u:secretpw@:bad/db", "",
                                 "postgresql:///db"])
def test_bad_urls_are_refused_without_showing_them(url):
    with pytest.raises(RotationError) as err:
        url_credentials(url)
    assert "secretpw" not in str(err.value)
