"""Gateway API keys: from MLOPS_API_KEYS or a private file, generated once when there is none."""

from __future__ import annotations

import stat

from mlops.serving.api_keys import api_keys_file, ensure_api_key, load_api_keys
from mlops.settings import Settings


def test_env_keys_win_over_the_file(tmp_path):
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path)})
    api_keys_file(settings).parent.mkdir(parents=True)
    api_keys_file(settings).write_text("from-file\n")
    assert load_api_keys(settings, {"MLOPS_API_KEYS": " a, b ,,"}) == {"a", "b"}
    assert ensure_api_key(settings, {"MLOPS_API_KEYS": "a,b"}) == "a"
    assert load_api_keys(settings, {}) == {"from-file"}


def test_ensure_generates_a_private_key_once(tmp_path):
    settings = Settings.from_env({"MLOPS_HOME": str(tmp_path)})
    assert load_api_keys(settings, {}) == set()
    key = ensure_api_key(settings, {})
    path = api_keys_file(settings)
    assert len(key) >= 40 and path == tmp_path.resolve() / "secrets" / "api_keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert ensure_api_key(settings, {}) == key  # not regenerated
    assert load_api_keys(settings, {}) == {key}
