"""The one HCL loader (L1 and L2): lines, attributes set twice, the parse cache (private, no
secrets), and the expression evaluator behind L1's inputs."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from helpers import base_env, run_inv

from tasks.l1.hcl import HclError, load_hcl, load_vars_file
from tasks.l1.hclexpr import Content, Evaluator, Unknown, compile_template, parse_literals
from tasks.runtime.errors import ConfigError

# ---------------------------------------------------------------- the evaluator


class _Scope:
    vars = {"scripts": ["a.sh", "b.sh"], "name": "web", "map": {"k": "v"}, "n": 2}

    def root(self, name: str):
        if name == "var":
            return self.vars
        if name == "path":
            return {"root": "/tpl", "cwd": "/repo"}
        return Unknown(f"{name} is not known")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${abspath(path.root)}/data/x", "/tpl/data/x"),
        ("${path.cwd}/x", "/repo/x"),
        (
            '${[for s in var.scripts : "${path.root}/scripts/${s}"]}',
            ["/tpl/scripts/a.sh", "/tpl/scripts/b.sh"],
        ),
        ('${var.name == "" ? "none" : upper(var.name)}', "WEB"),
        ('${join(",", concat(var.scripts, ["c.sh"]))}', "a.sh,b.sh,c.sh"),
        ('${format("%s-%d", var.name, var.n + 1)}', "web-3"),
        ('${lookup(var.map, "x", "default")}', "default"),
        ('${var.map["k"]}', "v"),
        ("${var.scripts[1]}", "b.sh"),
        ('${{for k, v in var.map : k => "${v}!"}}', {"k": "v!"}),
        ("<<EOT\nline ${var.name}\nEOT", "line web\n"),
        ('has "quotes" and $${escaped}', 'has "quotes" and ${escaped}'),
        ('${basename("/a/b/c.iso")}', "c.iso"),
        ('${split("/", "a/b")[1]}', "b"),
    ],
)
def test_expressions_evaluate(text: str, expected: object) -> None:
    assert Evaluator(_Scope(), cwd="/tpl").value(compile_template(text)) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('${vault("secret/x", "k")}', "vault() reads HashiCorp Vault at build time"),
        ("${var.nope}", "var.nope is not set"),
        ("${timestamp()}", "changes on every run"),
        ("${var.scripts[*]}", "splat"),
        ("%{ if true }x%{ endif }", "%{...} template directive"),
        ("${build.ID}", "build is not known"),
        ("${nosuchfunction(1)}", "nosuchfunction() is not evaluated here"),
    ],
)
def test_what_cannot_be_known_here_is_unknown_with_a_reason(text: str, reason: str) -> None:
    value = Evaluator(_Scope()).value(compile_template(text))
    assert isinstance(value, Unknown) and reason in value.reason, value


def test_file_functions_record_what_they_read(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text('{"http": "web", "iso": "x.iso"}')
    (tmp_path / "scripts").mkdir()
    for name in ("b.sh", "a.sh", "c.txt"):
        (tmp_path / "scripts" / name).write_text("")
    ev = Evaluator(_Scope(), cwd=str(tmp_path))
    assert ev.value(compile_template('${jsondecode(file("settings.json")).http}')) == "web"
    assert ev.value(compile_template('${fileset(".", "scripts/*.sh")}')) == [
        "scripts/a.sh",
        "scripts/b.sh",
    ]
    assert isinstance(ev.value(compile_template('${templatefile("t.tpl", {})}')), Content)
    assert set(ev.reads) == {
        str(tmp_path / p) for p in ("settings.json", "scripts/a.sh", "scripts/b.sh", "t.tpl")
    }


def test_var_files_are_read_as_literals_without_python_hcl2() -> None:
    values, lines, dups = parse_literals(
        '# comment\nscripts = [\n  "a.sh", # first\n  "b.sh",\n]\nmap = { k = 1\n  "l" = true }\n'
        "text = <<EOF\nhello\nEOF\n"
    )
    assert values == {"scripts": ["a.sh", "b.sh"], "map": {"k": 1, "l": True}, "text": "hello\n"}
    assert lines == {"scripts": 2, "map": 6, "text": 8} and dups == []


# ---------------------------------------------------------------- the loader


def test_lines_of_blocks_and_attributes(tmp_path: Path) -> None:
    path = tmp_path / "t.pkr.hcl"
    path.write_text(
        'source "proxmox-iso" "x" {\n  node = "pve1"\n  boot_iso {\n    iso_url = "a"\n  }\n}\n'
        'build {\n  name = "b"\n  provisioner "shell" {\n    script = "s.sh"\n  }\n}\n'
    )
    hcl = load_hcl(path, None, "t.pkr.hcl")
    assert hcl.where("source", 0, "node") == "t.pkr.hcl:2"
    assert hcl.where("source", 0, "boot_iso", 0, "iso_url") == "t.pkr.hcl:4"
    assert hcl.where("build", 0, "provisioner", 0, "script") == "t.pkr.hcl:10"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'source "null" "x" {\n  communicator = "none"\n  # again\n  communicator = "ssh"\n}\n',
            't.hcl:4: communicator is set twice in source "null" "x" (lines 2 and 4)',
        ),
        (
            'a = 1\nb = "x"\na = 2\n',
            "t.hcl:3: a is set twice in the file's top level (lines 1 and 3)",
        ),
        (
            'vm "web" {\n  cores = 2\n  disk "scsi0" {\n    size = "10G"\n    size = "20G"\n  }\n}\n',
            't.hcl:5: size is set twice in disk "scsi0" (lines 4 and 5)',
        ),
    ],
)
def test_an_attribute_set_twice_names_both_lines(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "t.hcl"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_hcl(path, None, "t.hcl")
    assert caught.value.message == message


def test_repeated_blocks_and_strings_that_look_like_attributes_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "t.hcl"
    path.write_text(
        'build {\n  provisioner "shell" {\n    inline = ["a = 1", "a = 2"]\n  }\n'
        '  provisioner "shell" {\n    inline = [<<EOF\nx = 1\nx = 2\nEOF\n    ]\n  }\n}\n'
    )
    assert len(load_hcl(path, None).doc["build"][0]["provisioner"]) == 2


def test_a_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "t.hcl"
    path.write_text('source "null" "x" {\n  communicator = \n}\n')
    with pytest.raises(HclError) as caught:
        load_hcl(path, None, "t.hcl")
    assert (caught.value.line, caught.value.column) == (2, 18)
    assert caught.value.message.startswith("t.hcl:2:18: invalid HCL:")


def test_the_parse_cache_is_private_and_holds_no_secret(tmp_path: Path) -> None:
    cache = tmp_path / ".work" / "l1" / "parse-cache"
    hcl = tmp_path / "vars.pkr.hcl"
    hcl.write_text(
        'variable "token" {\n  type      = string\n  sensitive = true\n'
        '  default   = "default-secret-4711"\n}\n'
    )
    loaded = load_hcl(hcl, cache)
    assert loaded.doc["variable"][0]["token"]["default"] != "default-secret-4711"
    pkrvars = tmp_path / "secrets.auto.pkrvars.hcl"
    pkrvars.write_text('token = "pkrvars-secret-0815"\n')
    assert load_vars_file(pkrvars).values == {"token": "pkrvars-secret-0815"}
    entries = list(cache.rglob("*.json"))
    assert len(entries) == 2  # the HCL file's two parts; the var file is never cached
    for entry in entries:
        text = entry.read_text()
        assert "default-secret-4711" not in text and "pkrvars-secret-0815" not in text
        assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    for folder in [cache, *(p for p in cache.rglob("*") if p.is_dir())]:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_var_file_set_twice_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.auto.pkrvars.hcl"
    path.write_text('a = "1"\nb = 2\na = "3"\n')
    with pytest.raises(
        ConfigError, match=r"x.auto.pkrvars.hcl:3: a is set twice \(lines 1 and 3\)"
    ):
        load_vars_file(path, "x.auto.pkrvars.hcl")


# ---------------------------------------------------------------- through the front door


def _env() -> dict[str, str]:
    return base_env(PVE_NODE="pve1", PVE_STORAGE_VM="local-lvm")


def test_l2_declarations_use_the_same_loader_and_cache(sample_repo: Path) -> None:
    from tasks.l2.spec import load_specs

    vms = sample_repo / "layers" / "l2" / "vms.hcl"
    cache = sample_repo / ".work" / "l1" / "parse-cache"
    specs = load_specs(sample_repo / "layers" / "l2", sample_repo, "pve1")
    assert specs and any(p.suffix == ".json" for p in cache.rglob("*.json"))
    text = vms.read_text()
    line = next(i for i, ln in enumerate(text.splitlines(), 1) if "memory" in ln)
    lines = text.splitlines()
    lines.insert(line, lines[line - 1])  # the same attribute again on the next line
    vms.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        load_specs(sample_repo / "layers" / "l2", sample_repo, "pve1")
    assert caught.value.message.startswith(f"layers/l2/vms.hcl:{line + 1}: memory is set twice in ")
    assert caught.value.message.endswith(f"(lines {line} and {line + 1})")


def test_l1_reports_an_attribute_set_twice_as_the_templates_row(sample_repo: Path) -> None:
    hcl = sample_repo / "layers/l1/templates/debian12-k3s/debian12-k3s.pkr.hcl"
    hcl.write_text(
        hcl.read_text().replace(
            "  full_clone = false\n", "  full_clone = false\n  full_clone = true\n"
        )
    )
    result = run_inv(sample_repo, "l1.list", "--json", env=_env())
    assert result.returncode == 2, str(result)
    rows = {r["template"]: r for r in json.loads(result.stdout)}
    assert "full_clone is set twice" in rows["debian12-k3s"]["error"]
    assert rows["debian12-base"]["error"] is None


def test_cache_folders_are_private_after_a_run(sample_repo: Path) -> None:
    assert run_inv(sample_repo, "l1.list", env=_env()).returncode == 0
    cache = sample_repo / ".work" / "l1" / "parse-cache"
    modes = {stat.S_IMODE(os.stat(p).st_mode) for p in [cache, *cache.rglob("*")]}
    assert modes <= {0o700, 0o600}, modes
