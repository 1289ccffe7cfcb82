"""A DVC connection's credentials reach the variables each cloud's SDK reads, and nothing else."""

from __future__ import annotations

import pytest

from operators.hooks import remote_credentials


@pytest.mark.parametrize(
    ("url", "login", "password", "extra", "expected"),
    [
        ("s3://b/p", "AKIA", "secret", {}, {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "secret"}),
        ("s3://b/p", None, None, {}, {}),  # boto's own chain (profiles, roles)
        ("azure://c/p", "acct", "key", {}, {"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_KEY": "key"}),
        ("azure://c/p", "acct", None, {}, {"AZURE_STORAGE_ACCOUNT": "acct"}),  # Azure AD through azure-identity
        ("azure://c/p", "acct", "key", {"connection_string": "DefaultEndpointsProtocol=https;..."},
         {"AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=https;..."}),
        ("gs://b/p", "ignored", "ignored", {"key_path": "/run/secrets/gcs.json"}, {"GOOGLE_APPLICATION_CREDENTIALS": "/run/secrets/gcs.json"}),
        ("gs://b/p", None, None, {}, {}),
        ("/srv/dvc-remote", "u", "p", {}, {}),
    ],
)
def test_credentials_go_to_the_sdk_of_the_remote(url, login, password, extra, expected):
    assert remote_credentials(url, login, password, extra) == expected
