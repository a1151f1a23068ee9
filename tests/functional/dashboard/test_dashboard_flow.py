"""The whole dashboard path on a dashboard of its own: configure, register, approve, freeze, download kits.

The tests of this module build on each other in file order (a frozen project cannot be
unfrozen); each one says what it expects to find.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import zipfile

import pytest

from tests.helpers.zipcrypto import pin_refused

pytestmark = pytest.mark.slow

PIN = "Kit4Pin2026"
OTHER_PIN = "AnotherPin77"
LEAD_PW = "FlowLeadPw8642"
SECRETS = [PIN, OTHER_PIN, LEAD_PW]
SERVER = "fl.example.org"
LEAD = "lead@hospital-a.example.org"
PROJECT = dict(short_name="spleen", title="Spleen", server=SERVER, fed_learn_port=8102, admin_port=8103, public=True)


@pytest.fixture(scope="module")
def flow(start_dashboard):
    return start_dashboard()


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    return tmp_path_factory.mktemp("kits")


def read_kit(path, pin=PIN) -> dict:
    with zipfile.ZipFile(path) as kit:
        return {i.filename: kit.read(i, pwd=pin.encode()) for i in kit.infolist() if not i.is_dir()}


def sha256(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def test_freezing_an_unconfigured_project_fails(flow, run_module):
    result = run_module("dashboard_project", flow.conn(frozen=True))
    assert result.failed
    assert "short_name and server not set" in result["msg"]
    assert flow.project()["frozen"] is False


def test_configure_register_approve_and_freeze(flow, run_module):
    assert run_module("dashboard_project", flow.conn(**PROJECT))["changed"] is True
    for email, org, role in [(LEAD, "hospital_a", "lead"), ("member@hospital-b.example.org", "hospital_b", "member")]:
        args = flow.conn(email=email, user_password=LEAD_PW, organization=org, role=role, approved=True)
        assert run_module("dashboard_user", args, secrets=SECRETS)["changed"] is True
        assert run_module("dashboard_user", args, secrets=SECRETS)["changed"] is False
    for name, org in [("site-a", "hospital_a"), ("site-b", "hospital_b")]:
        args = flow.conn(name=name, organization=org, num_of_gpus=0, approved=True)
        assert run_module("dashboard_site", args)["changed"] is True
        assert run_module("dashboard_site", args)["changed"] is False
    run_module("dashboard_site", flow.conn(name="site-pending", organization="hospital_b"))

    check = run_module("dashboard_project", flow.conn(frozen=True, **PROJECT), check_mode=True)
    assert check["changed"] is True
    assert "irreversible" in json.dumps(check["warnings"])
    assert flow.project()["frozen"] is False

    frozen = run_module("dashboard_project", flow.conn(frozen=True, **PROJECT))
    assert frozen["changed"] is True
    assert frozen["project"]["frozen"] is True
    assert flow.project()["frozen"] is True
    assert run_module("dashboard_project", flow.conn(frozen=True, **PROJECT))["changed"] is False


def test_a_frozen_project_cannot_change_or_thaw(flow, run_module):
    changed = run_module("dashboard_project", flow.conn(title="Another title"))
    assert changed.failed
    assert "cannot change title of dashboard project 'spleen': the project is frozen" in changed["msg"]
    thawed = run_module("dashboard_project", flow.conn(frozen=False))
    assert thawed.failed
    assert "freezing is irreversible" in thawed["msg"]
    assert flow.project()["title"] == "Spleen"


@pytest.mark.parametrize(
    "kind, name, probe, expected",
    [
        ("server", None, "startup/fed_server.json", f'"target": "{SERVER}:8102"'),
        ("site", "site-a", "startup/fed_client.json", '"fqsn": "site-a"'),
        ("user", LEAD, "startup/fed_admin.json", f'"username": "{LEAD}"'),
    ],
)
def test_kit_download_is_idempotent_on_content(flow, run_module, kits, kind, name, probe, expected):
    dest = kits / f"{kind}.zip"
    args = flow.conn(kind=kind, name=name, pin=PIN, dest=str(dest))

    downloads = flow.sites()["site-a"]["download_count"]
    check = run_module("dashboard_kit", args, check_mode=True, secrets=SECRETS)
    assert check["changed"] is True
    assert not dest.exists()
    assert flow.sites()["site-a"]["download_count"] == downloads, "check mode downloaded a kit"

    first = run_module("dashboard_kit", args, diff=True, secrets=SECRETS)
    assert not first.failed, first
    assert first["changed"] is True
    assert first["participant"] == (name or SERVER)
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    content = read_kit(dest)
    assert expected in content[probe].decode()
    assert b"BEGIN CERTIFICATE" in content["startup/rootCA.pem"]
    assert pin_refused(dest, OTHER_PIN)
    digest = sha256(dest)

    # The dashboard builds a new zip, with a new key, on every download...
    again = run_module("dashboard_kit", args, secrets=SECRETS)
    assert again["changed"] is False, again["changed_entries"]
    assert again["changed_entries"] == []
    # ... and the module kept the one it had.
    assert sha256(dest) == digest
    assert run_module("dashboard_kit", args, check_mode=True, secrets=SECRETS)["changed"] is False


def test_the_dashboard_zip_really_differs_per_download(flow):
    token = flow.token()
    site_id = flow.sites()["site-a"]["id"]
    downloads = [flow.api("POST", f"/clients/{site_id}/blob", {"pin": PIN}, token=token)[1] for _round in (1, 2)]
    assert downloads[0] != downloads[1]
    keys = [zipfile.ZipFile(io.BytesIO(d)).read("startup/client.key", pwd=PIN.encode()) for d in downloads]
    assert keys[0] != keys[1]


def test_a_new_pin_or_a_wrong_mode_is_a_change(flow, run_module, kits):
    dest = kits / "site-b.zip"
    args = flow.conn(kind="site", name="site-b", pin=PIN, dest=str(dest))
    assert run_module("dashboard_kit", args, secrets=SECRETS)["changed"] is True

    repinned = run_module("dashboard_kit", dict(args, pin=OTHER_PIN), secrets=SECRETS)
    assert repinned["changed"] is True
    assert "startup/fed_client.json" in repinned["changed_entries"]
    assert read_kit(dest, pin=OTHER_PIN)
    assert pin_refused(dest, PIN)

    os.chmod(dest, 0o644)
    digest = sha256(dest)
    fixed = run_module("dashboard_kit", dict(args, pin=OTHER_PIN), secrets=SECRETS)
    assert fixed["changed"] is True
    assert fixed["changed_entries"] == []
    assert stat.S_IMODE(os.stat(dest).st_mode) == 0o600
    assert sha256(dest) == digest


def test_a_capacity_change_changes_the_site_kit(flow, run_module, kits):
    dest = kits / "site-a-capacity.zip"
    args = flow.conn(kind="site", name="site-a", pin=PIN, dest=str(dest))
    run_module("dashboard_kit", args, secrets=SECRETS)
    assert run_module("dashboard_site", flow.conn(name="site-a", num_of_gpus=1, mem_per_gpu_in_GiB=8))["changed"]

    result = run_module("dashboard_kit", args, diff=True, secrets=SECRETS)
    assert result["changed"] is True
    assert result["changed_entries"] == ["local/resources.json.default"]
    assert result["diff"]["before"].startswith("local/resources.json.default: sha256:")
    assert '"num_of_gpus": 1' in read_kit(dest)["local/resources.json.default"].decode()


def test_kit_refusals_say_what_to_do(flow, run_module, kits, dead_url):
    dest = str(kits / "refused.zip")
    bad_pin = run_module(
        "dashboard_kit", flow.conn(url=dead_url, kind="server", pin="12-34", dest=dest), secrets=["12-34"]
    )
    assert bad_pin.failed
    assert "invalid PIN: it must be letters and digits only" in bad_pin["msg"]

    pending = run_module("dashboard_kit", flow.conn(kind="site", name="site-pending", pin=PIN, dest=dest))
    assert pending.failed
    assert "site site-pending: it is not approved yet" in pending["msg"]

    missing = run_module("dashboard_kit", flow.conn(kind="site", name="site-zzz", pin=PIN, dest=dest))
    assert missing.failed
    assert "the dashboard has no such site" in missing["msg"]

    wrong_server = run_module("dashboard_kit", flow.conn(kind="server", name="other.example.org", pin=PIN, dest=dest))
    assert wrong_server.failed
    assert f"the dashboard project's server is '{SERVER}'" in wrong_server["msg"]

    no_dir = run_module("dashboard_kit", flow.conn(kind="server", pin=PIN, dest=str(kits / "no" / "such.zip")))
    assert no_dir.failed
    assert "does not exist" in no_dir["msg"]
    assert not os.path.exists(dest)


def test_a_lead_gets_its_own_kit_but_not_the_servers(flow, run_module, kits):
    lead = dict(username=LEAD, password=LEAD_PW)
    dest = kits / "lead-own.zip"
    own = run_module(
        "dashboard_kit", flow.conn(kind="user", name=LEAD, pin=PIN, dest=str(dest), **lead), secrets=SECRETS
    )
    assert not own.failed, own
    assert b"lead" in read_kit(dest)["startup/fed_admin.json"]

    server = run_module(
        "dashboard_kit", flow.conn(kind="server", pin=PIN, dest=str(kits / "stolen.zip"), **lead), secrets=SECRETS
    )
    assert server.failed
    assert "HTTP 403" in server["msg"]
    assert "role lead" in server["msg"]
    assert not (kits / "stolen.zip").exists()


def test_the_site_kit_installs_with_startup_kit(flow, run_module, kits, tmp_path):
    """The zip dashboard_kit writes is what federated.nvflare.startup_kit installs on a site."""
    src = kits / "site.zip"
    if not src.exists():
        pytest.skip("the site kit test did not run")
    dest = tmp_path / "site-a"
    args = dict(src=str(src), pin=PIN, dest=str(dest), participant="site-a", type="client")
    result = run_module("startup_kit", args, secrets=SECRETS)
    assert not result.failed, result
    assert result["changed"] is True
    assert (dest / "startup" / "fed_client.json").is_file()
    assert stat.S_IMODE(os.stat(dest / "startup" / "client.key").st_mode) == 0o600
    assert os.access(dest / "startup" / "start.sh", os.X_OK)
    assert run_module("startup_kit", args, secrets=SECRETS)["changed"] is False


def test_a_hyphenated_organization_is_caught_before_the_dashboards_500(flow, run_module, kits):
    # The dashboard itself accepts the hyphen at sign-up...
    email = "hyphen@bad-org.example.org"
    status, created = flow.api(
        "POST", "/users", {"email": email, "password": LEAD_PW, "organization": "bad-org", "role": "member"}
    )
    assert status == 201
    token = flow.token()
    user_id = created["user"]["id"]
    assert flow.api("PATCH", f"/users/{user_id}", {"approval_state": 100}, token=token)[0] == 200
    # ... and fails when it builds the kit.
    assert flow.api("POST", f"/users/{user_id}/blob", {"pin": PIN}, token=token)[0] == 500

    result = run_module(
        "dashboard_kit", flow.conn(kind="user", name=email, pin=PIN, dest=str(kits / "hyphen.zip")), secrets=SECRETS
    )
    assert result.failed
    assert "invalid org name 'bad-org'" in result["msg"]
    assert "Fix its organization first" in result["msg"]
