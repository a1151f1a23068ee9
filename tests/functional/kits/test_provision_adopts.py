"""federated.nvflare.provision adopts a workspace that `nvflare provision` made by hand: its root CA
and certificates stay. This needs the real `nvflare provision` command, hence the functional layer."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.helpers.modules import run_module

NVFLARE = str(Path(sys.executable).with_name("nvflare"))
SERVER = "fl.example.org"
ADMIN = "admin@example.org"

PROJECT_YML = f"""api_version: 3
name: project_a
participants:
  - {{name: {SERVER}, type: server, org: org_a, fed_learn_port: 8002, admin_port: 8003}}
  - {{name: site-1, type: client, org: org_a}}
  - {{name: site-2, type: client, org: org_a}}
  - {{name: '{ADMIN}', type: admin, org: org_a, role: project_admin}}
builders:
  - path: nvflare.lighter.impl.workspace.WorkspaceBuilder
  - path: nvflare.lighter.impl.static_file.StaticFileBuilder
    args: {{config_folder: config, scheme: grpc}}
  - path: nvflare.lighter.impl.cert.CertBuilder
  - path: nvflare.lighter.impl.signature.SignatureBuilder
"""


def fingerprint(pem: bytes) -> str:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256()).hex()


def spec(ws: Path) -> dict:
    return {
        "workspace": str(ws),
        "name": "project_a",
        "server": {"name": SERVER, "org": "org_a"},
        "sites": [{"name": "site-1", "org": "org_a"}, {"name": "site-2", "org": "org_b"}],
        "admins": [{"email": ADMIN, "org": "org_a", "role": "project_admin"}],
    }


def test_adopts_a_workspace_of_nvflare_provision(tmp_path):
    """A workspace that `nvflare provision` made by hand keeps its CA and certificates."""
    hand = tmp_path / "by-hand"
    hand.mkdir()
    (hand / "project.yml").write_text(PROJECT_YML)
    subprocess.run(
        [NVFLARE, "provision", "-p", "project.yml", "-w", "ws", "--force"],
        cwd=hand,
        check=True,
        capture_output=True,
        timeout=120,
    )
    prod = hand / "ws" / "project_a" / "prod_00"
    ws = tmp_path / "workspace"
    shutil.copytree(hand / "ws", ws)
    old_site1 = (prod / "site-1" / "startup" / "client.crt").read_bytes()
    res = run_module("provision", spec(ws))
    assert not res.failed, res
    assert res["root_ca_sha256"] == fingerprint((prod / "site-1" / "startup" / "rootCA.pem").read_bytes())
    assert (ws / "kits" / "site-1" / "startup" / "client.crt").read_bytes() == old_site1
