"""The controller side of the cloud scenario: AWS played by moto, a non-root operator, the test layer.

The scenario runs the headline commands of docs/aws.md as a cloud user runs them: as an ordinary
user on the controller (OPERATOR, not root) from that user's own copy of the collection, with
its own SSH key, against EC2 and Route53 (moto's server on loopback), over SSH to hosts that
log it in as `ubuntu` with passwordless sudo. The hosts are systemd containers of the `ssh`
test image; one test-only inventory file (LAYER) gives each instance name its container's
address and the offline package source, because moto's instances have no machine behind them.
Production needs none of this layer.

    cloudctl.py prepare STATE          start moto, create the operator, its key and its copy of
                                       the collection, authorize the key on the containers and
                                       write their host keys to its known_hosts, resolve the
                                       server's name, build the instances with aws_infra.yml,
                                       write the layer
    cloudctl.py site STATE             run site.yml as docs/aws.md gives it (SITE_COMMAND)
    cloudctl.py run STATE -- CMD...    run CMD as the operator in its copy, AWS pointed at moto
    cloudctl.py cleanup STATE          stop moto, remove the operator and the name resolution

Nothing here talks to a real AWS endpoint: every AWS setting points at 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
OPERATOR = "nvops"
HOME = Path("/home") / OPERATOR
PROJECT_DIR = HOME / "federated.nvflare"
OPERATOR_VENV = HOME / "venv"
COLLECTIONS = HOME / "collections"
LAYER = HOME / "cloud-test-hosts.yml"
PROJECT = "cloudtest"
REGION = "eu-west-1"
ZONE = "fl.example.org"
NETWORK = "nvflare-cloud"
# Instance name (the Name tag, the inventory host name) -> the container that plays it.
INSTANCES = {"server": "cloud-server", "site-1": "cloud-site-1", "site-2": "cloud-site-2"}
SERVER_FQDN = f"server.{ZONE}"
HOSTS_BEGIN = "# BEGIN federated.nvflare molecule cloud"
HOSTS_END = "# END federated.nvflare molecule cloud"
# moto's machine images stand in for Ubuntu and the Deep Learning AMI.
AWS_VARS = {
    "aws_infra_vpc_mode": "create",
    "aws_infra_admin_cidrs": ["198.51.100.7/32"],
    "aws_infra_route53_zone": ZONE,
    "aws_infra_instances": [
        {"name": "server", "role": "server"},
        {"name": "site-1", "role": "client"},
        {"name": "site-2", "role": "client"},
    ],
    "aws_infra_images": {
        "server": {"name": "ubuntu/images/hvm-ssd/ubuntu-*", "owner": "099720109477"},
        "client": {"name": "Deep Learning AMI Ubuntu*", "owner": "898082745236"},
    },
}
# The commands of docs/aws.md, as the scenario runs them (LAYER added where the test needs it).
INFRA_COMMAND = ["ansible-playbook", "playbooks/aws_infra.yml", "-i", "inventories/aws_ec2.yml", "-e", "@aws-vars.yml"]
SITE_COMMAND = [
    "ansible-playbook", "playbooks/site.yml", "-i", "inventories/aws_ec2.yml", "-i", str(LAYER),
    "-e", "nvflare_submit_job=true",
]  # fmt: skip


def sh(*cmd: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=kw.pop("timeout", 300), **kw)


def as_operator(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return sh("runuser", "-u", OPERATOR, "--", *cmd, **kw)


def moto_url(state: Path) -> str:
    url = json.loads((state / "moto.json").read_text())["url"]
    # Hard rule: nothing may reach a real AWS endpoint.
    assert url.startswith("http://127.0.0.1:"), url
    return url


def operator_env(state: Path) -> dict[str, str]:
    """The operator's whole environment: its own paths, AWS pointed at moto with dummy credentials."""
    url = moto_url(state)
    return {
        "HOME": str(HOME),
        "USER": OPERATOR,
        "LOGNAME": OPERATOR,
        "LANG": "C.UTF-8",
        "PATH": f"{OPERATOR_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "VIRTUAL_ENV": str(OPERATOR_VENV),
        # Its copy of federated.nvflare first, then the collections it depends on.
        "ANSIBLE_COLLECTIONS_PATH": f"{COLLECTIONS}:{VENV / 'collections'}",
        "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "NVFLARE_PROJECT": PROJECT,
        "AWS_ENDPOINT_URL": url,
        "AWS_ENDPOINT_URL_EC2": url,
        "AWS_ENDPOINT_URL_ROUTE_53": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(HOME / ".aws-test" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(HOME / ".aws-test" / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run(state: Path, cmd: list[str], timeout: int = 1800) -> int:
    """Run CMD as the operator in its copy of the collection; its output goes to ours."""
    env = operator_env(state)
    proc = subprocess.run(
        ["runuser", "-u", OPERATOR, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), *cmd],
        cwd=PROJECT_DIR,
        timeout=timeout,
        check=False,
    )
    return proc.returncode


# --- moto -----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto(state: Path) -> None:
    port = _free_port()
    log = open(state / "moto.log", "ab")  # noqa: SIM115 (the server keeps it)
    proc = subprocess.Popen(
        [str(VENV / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    (state / "moto.json").write_text(json.dumps({"pid": proc.pid, "url": url}))
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("moto_server did not start: " + (state / "moto.log").read_text()[-2000:]) from None
            time.sleep(0.2)


def stop_moto(state: Path) -> None:
    try:
        pid = json.loads((state / "moto.json").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    (state / "moto.json").unlink(missing_ok=True)


def create_zone(state: Path) -> None:
    import boto3

    url = moto_url(state)
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    route53 = session.client("route53", endpoint_url=url)
    if not any(z["Name"] == ZONE + "." for z in route53.list_hosted_zones()["HostedZones"]):
        route53.create_hosted_zone(Name=ZONE, CallerReference=f"molecule-cloud-{time.time()}")


# --- the operator ---------------------------------------------------------------------------


def _write_as_operator(path: Path, text: str, mode: int = 0o644) -> None:
    as_operator("install", "-m", oct(mode)[2:], "/dev/null", str(path))
    as_operator("tee", str(path), input=text)


def create_operator() -> None:
    """An ordinary user with its own key, virtualenv and copy of the collection (nothing of root's)."""
    try:
        pwd.getpwnam(OPERATOR)
    except KeyError:
        sh("useradd", "--create-home", "--shell", "/bin/bash", OPERATOR)
    as_operator("install", "-d", "-m", "0700", str(HOME / ".ssh"))
    if not (HOME / ".ssh" / "id_ed25519").exists():
        as_operator("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{OPERATOR}@controller",
                    "-f", str(HOME / ".ssh" / "id_ed25519"))  # fmt: skip
    # The controller's Python packages are the project's virtualenv's: a virtualenv of the
    # system's Python that reads them (the project's may be built on an interpreter under
    # /root, which an ordinary user cannot run).
    system = sh("/usr/bin/python3", "-c", "import sys; print(sys.version_info[:2])").stdout.strip()
    ours = str(sys.version_info[:2])
    if system != ours:
        raise SystemExit(f"/usr/bin/python3 is {system}, the project's virtualenv {ours}: they must be the same")
    if not (OPERATOR_VENV / "bin" / "python").exists():
        as_operator("/usr/bin/python3", "-m", "venv", "--without-pip", str(OPERATOR_VENV))
    site = as_operator(
        str(OPERATOR_VENV / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    )
    _write_as_operator(Path(site.stdout.strip()) / "project-venv.pth", sysconfig.get_paths()["purelib"] + "\n")
    for name, module in (("ansible", "adhoc"), ("ansible-playbook", "playbook"), ("ansible-inventory", "inventory"),
                         ("ansible-galaxy", "galaxy")):  # fmt: skip
        _write_as_operator(
            OPERATOR_VENV / "bin" / name,
            f"#!{OPERATOR_VENV}/bin/python\nimport sys\nfrom ansible.cli.{module} import main\nsys.exit(main())\n",
            0o755,
        )
    # Its copy of the collection: the working tree's files that git tracks or would track.
    files = sh("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=ROOT).stdout
    if PROJECT_DIR.exists():
        as_operator("rm", "-rf", str(PROJECT_DIR))
    as_operator("mkdir", "-p", str(PROJECT_DIR), str(COLLECTIONS / "ansible_collections" / "federated"))
    tar = subprocess.run(
        ["tar", "-C", str(ROOT), "--null", "-T", "-", "-c", "--ignore-failed-read"],
        input=files.encode(),
        capture_output=True,
        check=True,
    )
    subprocess.run(["runuser", "-u", OPERATOR, "--", "tar", "-C", str(PROJECT_DIR), "-x"], input=tar.stdout, check=True)
    as_operator("ln", "-sfn", str(PROJECT_DIR), str(COLLECTIONS / "ansible_collections" / "federated" / "nvflare"))
    _write_as_operator(PROJECT_DIR / "aws-vars.yml", json.dumps(AWS_VARS, indent=2) + "\n")


def remove_operator() -> None:
    try:
        pwd.getpwnam(OPERATOR)
    except KeyError:
        return
    sh("pkill", "-u", OPERATOR, check=False)
    sh("userdel", "--remove", OPERATOR, check=False)
    shutil.rmtree(HOME, ignore_errors=True)


# --- the containers -------------------------------------------------------------------------


def container_ip(container: str) -> str:
    template = f'{{{{(index .NetworkSettings.Networks "{NETWORK}").IPAddress}}}}'
    return sh("docker", "inspect", "-f", template, container).stdout.strip()


def wait_for_sshd(container: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while sh("docker", "exec", container, "systemctl", "is-active", "ssh", check=False).stdout.strip() != "active":
        if time.monotonic() > deadline:
            raise SystemExit(f"sshd did not start in {container}")
        time.sleep(1)


def authorize_and_trust() -> dict[str, str]:
    """Put the operator's key into each container's `ubuntu` account (as cloud-init does on EC2),
    and each container's host keys, read through docker, into the operator's known_hosts."""
    public_key = (HOME / ".ssh" / "id_ed25519.pub").read_text()
    known, addresses = [], {}
    for name, container in INSTANCES.items():
        wait_for_sshd(container)
        sh("docker", "exec", "-i", container, "sh", "-euc",
           "install -d -m 0700 -o ubuntu -g ubuntu /home/ubuntu/.ssh; "
           "cat > /home/ubuntu/.ssh/authorized_keys; "
           "chown ubuntu:ubuntu /home/ubuntu/.ssh/authorized_keys; chmod 0600 /home/ubuntu/.ssh/authorized_keys",
           input=public_key)  # fmt: skip
        address = container_ip(container)
        addresses[name] = address
        keys = sh("docker", "exec", container, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub").stdout.split("\n")
        known += [f"{address} {' '.join(k.split()[:2])}" for k in keys if k.strip()]
    _write_as_operator(HOME / ".ssh" / "known_hosts", "\n".join(known) + "\n", 0o600)
    return addresses


def resolve_server(address: str) -> None:
    """The server's DNS name on the controller (the admin connects to it); the containers resolve
    it through the network alias that molecule.yml gives the server's container."""
    hosts = Path("/etc/hosts")
    lines = _without_our_block(hosts.read_text())
    lines += [HOSTS_BEGIN, f"{address} {SERVER_FQDN}", HOSTS_END]
    hosts.write_text("\n".join(lines) + "\n")


def _without_our_block(text: str) -> list[str]:
    out, inside = [], False
    for line in text.splitlines():
        if line == HOSTS_BEGIN:
            inside = True
        elif line == HOSTS_END:
            inside = False
        elif not inside:
            out.append(line)
    return out


def write_layer(addresses: dict[str, str]) -> None:
    wheelhouse = os.environ.get("NVFLARE_WHEELHOUSE", str(ROOT / ".cache" / "wheelhouse"))
    layer = {
        "all": {
            "hosts": {name: {"ansible_host": address} for name, address in addresses.items()},
            "vars": {
                # The instances have no way out: packages come from the controller's wheelhouse,
                # pushed to each host over SSH; the admin side installs from it directly.
                "server_wheelhouse_src": wheelhouse,
                "server_wheelhouse": "/opt/nvflare-wheelhouse",
                "client_gpu_wheelhouse_src": wheelhouse,
                "client_gpu_wheelhouse": "/opt/nvflare-wheelhouse",
                "admin_wheelhouse": wheelhouse,
                "admin_job_timeout": 900,
            },
        }
    }
    header = (
        "# Test only (molecule/cloud): the address of the container that plays each moto instance,\n"
        "# and the offline package source. Production needs no such layer.\n"
    )
    _write_as_operator(LAYER, header + json.dumps(layer, indent=2) + "\n")


# --- commands -------------------------------------------------------------------------------


def prepare(state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    stop_moto(state)
    start_moto(state)
    create_zone(state)
    create_operator()
    addresses = authorize_and_trust()
    resolve_server(addresses["server"])
    rc = run(state, INFRA_COMMAND, timeout=900)
    if rc != 0:
        raise SystemExit(f"aws_infra.yml failed (rc={rc})")
    write_layer(addresses)


def cleanup(state: Path) -> None:
    stop_moto(state)
    remove_operator()
    hosts = Path("/etc/hosts")
    text = hosts.read_text()
    if HOSTS_BEGIN in text:
        hosts.write_text("\n".join(_without_our_block(text)) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "prepare":
        prepare(Path(argv[1]))
    elif len(argv) >= 2 and argv[0] == "cleanup":
        cleanup(Path(argv[1]))
    elif len(argv) >= 2 and argv[0] == "site":
        return run(Path(argv[1]), SITE_COMMAND)
    elif len(argv) >= 4 and argv[0] == "run" and argv[2] == "--":
        return run(Path(argv[1]), argv[3:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
