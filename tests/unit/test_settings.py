"""Settings: defaults < TOML file < ATLAS_* environment < arguments; bad values are one line."""
from __future__ import annotations

import pytest

from attention_atlas.settings import Settings, SettingsError, load_settings


def test_defaults_without_env():
    s = load_settings(env={})
    assert s == Settings()
    assert s.auth == "none" and s.port == 8050 and s.host == "127.0.0.1"


def test_precedence_file_then_env_then_args(tmp_path):
    cfg = tmp_path / "atlas.toml"
    cfg.write_text('[atlas]\nport = 9000\nworkers = 3\ncache = "/srv/store"\nmodel_roots = ["/models", "/more"]\n')
    s = load_settings(env={"ATLAS_CONFIG": str(cfg), "ATLAS_WORKERS": "5"})
    assert (s.port, s.workers, s.cache) == (9000, 5, "/srv/store")
    assert s.model_roots == ("/models", "/more")
    s = load_settings(env={"ATLAS_CONFIG": str(cfg)}, port=9100)
    assert s.port == 9100


def test_env_lists_and_bools(tmp_path):
    s = load_settings(env={"ATLAS_CORPUS_ROOTS": f"{tmp_path}:{tmp_path}/sub", "ATLAS_TEAM": "yes",
                           "ATLAS_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2"})
    assert s.corpus_roots == (str(tmp_path.resolve()), str((tmp_path / "sub").resolve()))
    assert s.team is True
    assert s.trusted_proxies == ("10.0.0.1", "10.0.0.2")


@pytest.mark.parametrize("env, needle", [
    ({"ATLAS_PORT": "eighty"}, "ATLAS_PORT"),
    ({"ATLAS_PORT": "70000"}, "ATLAS_PORT"),
    ({"ATLAS_WORKERS": "0"}, "ATLAS_WORKERS"),
    ({"ATLAS_AUTH": "kerberos"}, "none, basic or proxy"),
    ({"ATLAS_AUTH": "basic"}, "needs users"),
    ({"ATLAS_AUTH": "basic", "ATLAS_USERS": "alice"}, "is not user:hash"),
    ({"ATLAS_AUTH": "basic", "ATLAS_USERS": "alice:s3cret"}, "plain password, not a bcrypt hash"),
    ({"ATLAS_AUTH": "proxy"}, "trusts no address by default"),
    ({"ATLAS_AUTH": "proxy", "ATLAS_TRUSTED_PROXIES": "10.0.0.300"}, "not an address or network"),
    ({"ATLAS_DEFAULT_ROLE": "admin"}, "viewer or editor"),
    ({"ATLAS_TEAM": "maybe"}, "true or false"),
])
def test_bad_values_are_one_line(env, needle):
    with pytest.raises(SettingsError) as exc:
        load_settings(env=env)
    msg = str(exc.value)
    assert needle in msg and "\n" not in msg


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 3")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(env={"ATLAS_CONFIG": str(bad)})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("colour = 'red'\n")
    with pytest.raises(SettingsError, match="unknown setting"):
        load_settings(env={"ATLAS_CONFIG": str(unknown)})
    with pytest.raises(SettingsError, match="cannot be read"):
        load_settings(env={"ATLAS_CONFIG": str(tmp_path / "missing.toml")})


def test_users_file_and_public_view_hide_passwords(tmp_path):
    """Changed with issue 14: the users file holds bcrypt hashes (htpasswd -nB format, optional role);
    a plain password is refused with the command that makes the line."""
    from attention_atlas.teamauth import check_password, hash_password

    ha, hb, hc = (hash_password(pw, rounds=4) for pw in ("s3cret", "hunter2", "pw-carol"))
    f = tmp_path / "users"
    f.write_text(f"# team\nalice:{ha}:editor\nbob:{hb.replace('$2b$', '$2y$')}\n")
    s = load_settings(env={"ATLAS_AUTH": "basic", "ATLAS_USERS_FILE": str(f), "ATLAS_USERS": f"carol:{hc}"})
    users = s.hashed_users()
    assert set(users) == {"alice", "bob", "carol"} and users["alice"][1] == "editor" and users["bob"][1] is None
    assert check_password("s3cret", users["alice"][0]) and check_password("hunter2", users["bob"][0])
    assert not check_password("hunter3", users["bob"][0])
    shown = repr(s.public())
    assert "s3cret" not in shown and "hunter2" not in shown and "pw'" not in shown
    f.write_text("alice:s3cret\n")
    with pytest.raises(SettingsError, match="plain password, not a bcrypt hash.*atlas hash-password alice"):
        load_settings(env={"ATLAS_AUTH": "basic", "ATLAS_USERS_FILE": str(f)})


def test_team_mode_requires_explicit_auth_choice(tmp_path, monkeypatch):
    from tests.store_fixture import make_test_store
    make_test_store(tmp_path / "store", n_layers=1, n_heads=2, n_inputs=2)
    from attention_atlas import wsgi  # noqa: F401 - importing builds the app from os.environ; build() is the testable part
    with pytest.raises(SettingsError, match="team mode needs authentication"):
        wsgi.build({"ATLAS_CACHE": str(tmp_path / "store")})
    app, context = wsgi.build_app({"ATLAS_CACHE": str(tmp_path / "store"), "ATLAS_AUTH": "none",
                                   "ATLAS_JOBS_DIR": str(tmp_path / "jobs")})
    assert context.settings.team is True
    assert not app.server.debug
    assert not [a for a in vars(app) if a.startswith("atlas_")]  # the app context is not kept on the app
