"""Pure parts of the SSH side, no server needed: facts parsers, plans, the secret prologue."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tasks.adapters.ssh import secret_env_prologue
from tasks.host.k3s import (
    K3sSpec,
    install_command,
    parse_facts,
    plan,
    rewrite_kubeconfig,
    uninstall_command,
    wait_command,
)
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


def test_kubeconfig_server_is_rewritten_names_follow_the_cluster_and_key_reported() -> None:
    text = (
        "clusters:\n- cluster: {server: 'https://127.0.0.1:6443'}\n  name: default\n"
        "contexts:\n- context: {cluster: default, user: default}\n  name: default\n"
        "current-context: default\n"
        "users:\n- name: default\n  user: {client-key-data: S3CRETKEYDATA}\n"
    )
    spec = K3sSpec.build(
        {"K3S_VERSION": "v1.31.4+k3s1"}, {"k3s_config": {"https-listen-port": 7443}}, "fd00::5"
    )
    assert spec.api_url == "https://[fd00::5]:7443"
    out, secrets = rewrite_kubeconfig(text, spec.api_url, "home")
    doc = yaml.safe_load(out)
    assert doc["clusters"] == [{"cluster": {"server": "https://[fd00::5]:7443"}, "name": "home"}]
    assert doc["contexts"] == [{"context": {"cluster": "home", "user": "home"}, "name": "home"}]
    assert doc["current-context"] == "home" and doc["users"][0]["name"] == "home"
    assert secrets == ["S3CRETKEYDATA"]


def test_joiners_get_the_server_in_their_config_the_first_of_several_cluster_init() -> None:
    env = {"K3S_VERSION": "v1.31.4+k3s1"}
    first = K3sSpec.build(env, {"k3s_config": {"a": 1}}, "10.0.20.11", cluster_init=True)
    agent = K3sSpec.build(
        env, {"k3s_role": "agent", "k3s_config": {}}, "10.0.20.21", join_url=first.api_url
    )
    assert yaml.safe_load(first.config_text()) == {"a": 1, "cluster-init": True}
    assert yaml.safe_load(agent.config_text()) == {"server": "https://10.0.20.11:6443"}
    assert agent.installer_env("tok-123456")["K3S_URL"] == "https://10.0.20.11:6443"
    assert "K3S_URL" not in first.installer_env(None) and "K3S_TOKEN" not in first.installer_env(
        None
    )
    assert "agent" in install_command(agent) and uninstall_command(agent).endswith(
        "k3s-agent-uninstall.sh"
    )
    with pytest.raises(ConfigError, match="k3s_config sets server"):
        K3sSpec.build(env, {"k3s_config": {"server": "https://x:6443"}}, "10.0.20.22")
    with pytest.raises(ConfigError, match="k3s_role='worker'"):
        K3sSpec.build(env, {"k3s_role": "worker"}, "10.0.20.22")


def test_facts_tell_which_role_is_installed() -> None:
    assert parse_facts(
        "k3s version v1.31.4+k3s1 (x)\n---8<---\n---8<---\nagent\n"
    ).installed_role == ("agent")
    assert not parse_facts("---8<---\n---8<---\nnone\n").installed


def test_the_wait_for_the_api_gives_up_with_the_reason() -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"https://127.0.0.1:{port}"
    proc = subprocess.run(
        ["sh", "-c", wait_command(url, 1)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 1
    assert f"no answer from {url}/ping within 1s" in proc.stderr and "curl" in proc.stderr


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
