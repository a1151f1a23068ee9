"""The controller side of the cloud scenario: AWS played by moto, a non-root operator, the test layer.

The scenario runs the README's headline commands as a new cloud user runs them: as an ordinary
user on the controller (OPERATOR, not root) with nothing but a clone of the repository, its own
SSH key and AWS settings (here: moto's server on loopback). The commands are read from the
README (the bash block that holds `make controller`), so the README and the test cannot drift:
`make controller` makes the clone's .venv, then the block's environment lines and playbook
commands run exactly as written, over SSH to hosts that log it in as `ubuntu` with passwordless
sudo. The hosts are systemd containers of the `ssh` test image. One test-only layer gives each
instance name its container's address and the offline package source, because moto's instances
have no machine behind them: host_vars and group_vars files beside inventories/aws_ec2.yml in the
operator's clone, so the commands stay as the README writes them. Production needs none of it.

    cloudctl.py prepare STATE          start moto, create the operator and its clone, authorize
                                       its key on the containers and write their host keys to its
                                       known_hosts, resolve the server's name, write the layer,
                                       run the README's block up to site.yml (make controller,
                                       aws_infra.yml)
    cloudctl.py site STATE             run the README's site.yml command (SITE_COMMAND)
    cloudctl.py run STATE -- CMD...    run CMD as the operator in its clone, its .venv active,
                                       AWS pointed at moto
    cloudctl.py cleanup STATE          stop moto, remove the operator and the name resolution

Nothing here talks to a real AWS endpoint: every AWS setting points at 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
OPERATOR = "nvops"
HOME = Path("/home") / OPERATOR
PROJECT_DIR = HOME / "federated.nvflare"
OPERATOR_VENV = PROJECT_DIR / ".venv"
LAYER_DIR = PROJECT_DIR / "inventories"
ZONE = "fl.example.org"
NETWORK = "nvflare-cloud"
# Instance name (the Name tag, the inventory host name) -> the container that plays it.
INSTANCES = {"server": "cloud-server", "site-1": "cloud-site-1", "site-2": "cloud-site-2"}
SERVER_FQDN = f"server.{ZONE}"
HOSTS_BEGIN = "# BEGIN federated.nvflare molecule cloud"
HOSTS_END = "# END federated.nvflare molecule cloud"


def readme_block() -> list[str]:
    """The README's headline commands: the lines of the bash block that runs `make controller`."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        lines = [line.split("  #")[0].rstrip() for line in block.splitlines()]
        lines = [line for line in lines if line.strip() and not line.lstrip().startswith("#")]
        if any(line.startswith("make controller") for line in lines):
            return lines
    raise SystemExit("README.md has no bash block with `make controller`")


def _readme_env() -> dict[str, str]:
    """The variables the README's block exports (the project, the region)."""
    found = {}
    for line in readme_block():
        if line.startswith("export "):
            for word in shlex.split(line)[1:]:
                key, _, value = word.partition("=")
                found[key] = value
    return found


_EXPORTED = _readme_env()
PROJECT = _EXPORTED.get("NVFLARE_PROJECT", "nvflare")
REGION = _EXPORTED.get("AWS_REGION", "us-east-1")
STATE_DIR = HOME / ".local" / "share" / "federated.nvflare" / PROJECT
# The README's commands, split where the scenario's steps split them: everything up to site.yml
# in `prepare` (make controller, the environment, aws_infra.yml), the environment and site.yml in
# `converge` (so Molecule's idempotence step re-runs exactly that command).
ENV_LINES = [line for line in readme_block() if line.startswith(("source ", ". ", "export "))]
SITE_LINE = next(line for line in readme_block() if "playbooks/site.yml" in line)
SETUP_LINES = readme_block()[: readme_block().index(SITE_LINE)]
SITE_COMMAND = [*ENV_LINES, SITE_LINE]

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
    """The operator's whole environment: its own home and the system's PATH (no virtualenv, no
    Ansible setting: the README's commands set up the rest), AWS pointed at moto with dummy
    credentials (as a user's ~/.aws would point at AWS)."""
    url = moto_url(state)
    return {
        "HOME": str(HOME),
        "USER": OPERATOR,
        "LOGNAME": OPERATOR,
        "LANG": "C.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "AWS_ENDPOINT_URL": url,
        "AWS_ENDPOINT_URL_EC2": url,
        "AWS_ENDPOINT_URL_ROUTE_53": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(HOME / ".aws-test" / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(HOME / ".aws-test" / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run_lines(state: Path, lines: list[str], cwd: Path = PROJECT_DIR, timeout: int = 1800, capture: bool = False):
    """Run shell LINES as the operator, one bash script stopping at the first failure. Returns the
    exit status, its output going to ours; with CAPTURE, (status, output) instead."""
    env = operator_env(state)
    script = "set -eo pipefail\n" + "\n".join(lines) + "\n"
    print("+ " + "\n+ ".join(lines), file=sys.stderr, flush=True)
    proc = subprocess.run(
        ["runuser", "-u", OPERATOR, "--", "env", "-i", *(f"{k}={v}" for k, v in env.items()), "bash", "-c", script],
        cwd=cwd,
        timeout=timeout,
        check=False,
        capture_output=capture,
        text=True,
    )
    if capture:
        return proc.returncode, proc.stdout + proc.stderr
    return proc.returncode


def run(state: Path, cmd: list[str], timeout: int = 1800) -> int:
    """Run CMD as the operator in its clone, in the environment of the README's block (the clone's
    virtualenv active, the project and region exported)."""
    return run_lines(state, [*ENV_LINES, shlex.join(cmd)], timeout=timeout)


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
    """An ordinary user with its own key and its own clone of the repository (nothing of root's):
    the files git tracks or would track, as a fresh clone has them."""
    try:
        pwd.getpwnam(OPERATOR)
    except KeyError:
        sh("useradd", "--create-home", "--shell", "/bin/bash", OPERATOR)
    as_operator("install", "-d", "-m", "0700", str(HOME / ".ssh"))
    if not (HOME / ".ssh" / "id_ed25519").exists():
        as_operator("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{OPERATOR}@controller",
                    "-f", str(HOME / ".ssh" / "id_ed25519"))  # fmt: skip
    files = sh("git", "ls-files", "-co", "--exclude-standard", "-z", cwd=ROOT).stdout
    if PROJECT_DIR.exists():
        as_operator("rm", "-rf", str(PROJECT_DIR))
    as_operator("mkdir", "-p", str(PROJECT_DIR))
    tar = subprocess.run(
        ["tar", "-C", str(ROOT), "--null", "-T", "-", "-c", "--ignore-failed-read"],
        input=files.encode(),
        capture_output=True,
        check=True,
    )
    subprocess.run(["runuser", "-u", OPERATOR, "--", "tar", "-C", str(PROJECT_DIR), "-x"], input=tar.stdout, check=True)
    # What the user writes, as docs/aws.md says: the instances to create.
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


def write_layer(addresses: dict[str, str], folder: Path = LAYER_DIR) -> None:
    """The test-only layer, as host_vars and group_vars beside the inventory file in FOLDER."""
    wheelhouse = os.environ.get("NVFLARE_WHEELHOUSE", str(ROOT / ".cache" / "wheelhouse"))
    header = (
        "# Test only (molecule/cloud): the address of the container that plays this moto instance,\n"
        "# and the offline package source. Production needs no such layer.\n"
    )
    as_operator("mkdir", "-p", str(folder / "host_vars"), str(folder / "group_vars"))
    for name, address in addresses.items():
        _write_as_operator(folder / "host_vars" / f"{name}.yml", header + json.dumps({"ansible_host": address}) + "\n")
    layer = {
        # The instances have no way out: packages come from the controller's wheelhouse,
        # pushed to each host over SSH; the admin side installs from it directly.
        "server_wheelhouse_src": wheelhouse,
        "server_wheelhouse": "/opt/nvflare-wheelhouse",
        "client_gpu_wheelhouse_src": wheelhouse,
        "client_gpu_wheelhouse": "/opt/nvflare-wheelhouse",
        "admin_wheelhouse": wheelhouse,
        "admin_job_timeout": 900,
        # The admin starts waiting as soon as its own side is ready, while the three hosts still
        # install PyTorch at once on the controller's 2 cores (NVFlare's retries are not the limit).
        "admin_wait_timeout": 600,
    }
    _write_as_operator(folder / "group_vars" / "all.yml", header + json.dumps(layer, indent=2) + "\n")


# --- commands -------------------------------------------------------------------------------


def prepare(state: Path) -> None:
    state.mkdir(parents=True, exist_ok=True)
    stop_moto(state)
    start_moto(state)
    create_zone(state)
    create_operator()
    addresses = authorize_and_trust()
    resolve_server(addresses["server"])
    write_layer(addresses)
    rc = run_lines(state, SETUP_LINES, timeout=1200)
    if rc != 0:
        raise SystemExit(f"the README's commands before site.yml failed (rc={rc}): {SETUP_LINES}")
    (state / "addresses.json").write_text(json.dumps(addresses))


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
        return run_lines(Path(argv[1]), SITE_COMMAND)
    elif len(argv) >= 4 and argv[0] == "run" and argv[2] == "--":
        return run(Path(argv[1]), argv[3:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
