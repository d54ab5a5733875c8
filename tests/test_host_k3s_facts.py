"""Pure parts of the SSH side, no server needed: facts parsers, plans, the secret prologue."""

from __future__ import annotations

import subprocess

import pytest

from tasks.adapters.ssh import secret_env_prologue
from tasks.host.k3s import K3sSpec, parse_facts, plan, rewrite_kubeconfig
from tasks.l3.ansible import parse_recap
from tasks.runtime.errors import ConfigError


def _spec(**kw) -> K3sSpec:
    return K3sSpec.build(
        {"K3S_VERSION": "v1.31.4+k3s1", **kw}, {"k3s_config": {"a": 1}}, "10.0.0.5"
    )


def test_k3s_plan_follows_the_facts() -> None:
    spec = _spec()
    assert plan(spec, parse_facts("")) == ["write-config", "install"]
    same = parse_facts(
        f"k3s version v1.31.4+k3s1 (x)\n---8<---\n{spec.config_text()}---8<---\nyes\n"
    )
    assert plan(spec, same) == []
    older = parse_facts(
        f"k3s version v1.30.1+k3s1 (x)\n---8<---\n{spec.config_text()}---8<---\nyes\n"
    )
    assert plan(spec, older) == ["install"]


def test_k3s_spec_refuses_bad_input() -> None:
    with pytest.raises(ConfigError, match="K3S_VERSION"):
        _spec(K3S_VERSION="latest")
    with pytest.raises(ConfigError, match="https"):
        _spec(K3S_INSTALL_URL="http://get.k3s.io")


def test_kubeconfig_server_is_rewritten_and_key_reported() -> None:
    text = (
        "clusters:\n- cluster: {server: 'https://127.0.0.1:6443'}\n  name: default\n"
        "users:\n- name: default\n  user: {client-key-data: S3CRETKEYDATA}\n"
    )
    out, secrets = rewrite_kubeconfig(text, "fd00::5")
    assert "https://[fd00::5]:6443" in out and secrets == ["S3CRETKEYDATA"]


def test_recap_parsing() -> None:
    recap = parse_recap(
        "PLAY RECAP ***\nweb1 : ok=4 changed=1 unreachable=0 failed=0 skipped=3 rescued=0 ignored=0\n"
        "db1                        : ok=0    changed=0    unreachable=1    failed=0\n"
    )
    assert recap == {
        "web1": {"ok": 4, "changed": 1, "unreachable": 0, "failed": 0},
        "db1": {"ok": 0, "changed": 0, "unreachable": 1, "failed": 0},
    }


def test_secret_prologue_hands_env_over_stdin_and_keeps_the_rest() -> None:
    value = 'it\'s a "secret" $HOME `x`\nline two'
    prologue, payload = secret_env_prologue({"MY_TOKEN": value})
    assert value not in prologue
    proc = subprocess.run(
        ["sh", "-c", prologue + 'printf "%s|" "$MY_TOKEN"; cat'],
        input=payload + b"rest of stdin",
        capture_output=True,
        check=True,
    )
    assert proc.stdout.decode() == value + "|rest of stdin"
    with pytest.raises(ConfigError):
        secret_env_prologue({"BAD-NAME": "x"})
