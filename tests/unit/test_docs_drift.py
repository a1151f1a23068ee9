"""The documentation and the argument specs cannot drift apart.

1. Every name in the Markdown documentation's code (inline code spans and fenced blocks) that
   looks like one of the collection's variables (a role prefix such as `admin_` or `nvflare_`,
   or the key of a backticked `key: value` / `-e key=value`) is a real variable: an option of a
   role's argument spec, or a name the roles and playbooks set themselves (a registered result,
   a fact). Names that are something else - tags, this collection's module options and return
   keys, Ansible's keywords, inventory groups - are recognized as such, most of them read from
   the code.
2. Every variable of a public role's argument spec is mentioned in README.md, docs/ or that
   role's README.md.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ROOT / "roles"
PLAYBOOKS = ROOT / "playbooks"

PREFIXES = (
    "nvflare_",
    "server_",
    "client_gpu_",
    "admin_",
    "dashboard_",
    "mlflow_",
    "tls_certbot_",
    "aws_infra_",
    "azure_infra_",
    "_participant_",
    "_runtime_",
    "_state_",
)

# Names in the documentation that look like variables and are not, and that the code does not
# name for this test to read. Keep it short.
NOT_VARIABLES = {
    # Inventory groups.
    "nvflare_server",
    "nvflare_clients",
    "nvflare_admin",
    "nvflare_dashboard",
    "nvflare_mlflow",
    "nvflare_relays",
    # Tags the cloud roles put on their resources, which the cloud inventories read, and the
    # host variable those inventories add (nvflare_cloud: aws or azure), which no role reads.
    "nvflare_project",
    "nvflare_role",
    "nvflare_ssh_user",
    "nvflare_dns_zone",
    "Name",
    "nvflare_cloud",
    # amazon.aws.ec2_instance's option, named in docs/aws.md.
    "exact_count",
    # Ansible's result keys every module returns.
    "changed",
    "failed",
    "msg",
    # The closing line of scripts/test.sh (docs/testing.md).
    "tests",
}

# Files and folders that share a prefix with the variables (roles/tls_certbot/files/nvflare_certbot.py).
_FILE_SUFFIX = r"\.(?:py|ya?ml|j2|sh|json|md|service|timer|txt|cfg|ini|tar|gz|zip|pem|log|tenseal)\b"
_PREFIXED = re.compile(
    r"(?<![\w./$-])((?:" + "|".join(re.escape(p) for p in PREFIXES) + r")\w*)(?![\w/*(-]|" + _FILE_SUFFIX + ")"
)
_KEY_VALUE = re.compile(r"^\s*([A-Za-z_]\w*):\s+\S")
_EXTRA_VAR = re.compile(r"(?:^|\s)-e\s+['\"]?([A-Za-z_]\w*)=")


def _doc_files() -> list[Path]:
    files = [ROOT / "README.md"]
    for folder in ("docs", "examples", "inventories"):
        files += sorted((ROOT / folder).rglob("*.md"))
    files += sorted(ROLES.glob("*/README.md"))
    return [f for f in files if f.is_file()]


@cache
def _argument_specs() -> dict[str, dict[str, dict]]:
    """role -> entry point -> options."""
    specs = {}
    for path in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        entry_points = yaml.safe_load(path.read_text())["argument_specs"]
        specs[path.parents[1].name] = {ep: (spec.get("options") or {}) for ep, spec in entry_points.items()}
    return specs


@cache
def _spec_variables() -> set[str]:
    return {name for entry_points in _argument_specs().values() for opts in entry_points.values() for name in opts}


def _walk(items):
    """Every task, play and block of a task file or playbook, nested blocks included."""
    for item in items or []:
        if not isinstance(item, dict):
            continue
        yield item
        for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
            yield from _walk(item.get(key))


def _tags(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


@cache
def _set_by_the_code() -> set[str]:
    """Registered results, facts and the tags of the roles and playbooks."""
    names = set()
    paths = [*ROLES.glob("*/tasks/*.yml"), *ROLES.glob("*/handlers/*.yml"), *PLAYBOOKS.glob("*.yml")]
    for path in paths:
        for item in _walk(yaml.safe_load(path.read_text())):
            if isinstance(item.get("register"), str):
                names.add(item["register"])
            names.update(_tags(item.get("tags")))
            for key in ("ansible.builtin.set_fact", "set_fact"):
                if isinstance(item.get(key), dict):
                    names.update(item[key])
            for key in ("ansible.builtin.include_role", "include_role", "ansible.builtin.include_tasks"):
                if isinstance(item.get(key), dict):
                    names.update(_tags((item[key].get("apply") or {}).get("tags")))
            for role in item.get("roles") or []:
                if isinstance(role, dict):
                    names.update(_tags(role.get("tags")))
    return names


def _doc_keys(doc) -> set[str]:
    """Option or return names of a module's documentation, nested ones included."""
    names = set()
    for name, spec in (doc or {}).items():
        names.add(name)
        if isinstance(spec, dict):
            for nested in ("suboptions", "contains"):
                names |= _doc_keys(spec.get(nested))
    return names


@cache
def _module_names() -> set[str]:
    """Options and return keys of this collection's modules and documentation fragments."""
    names = set()
    paths = [*(ROOT / "plugins" / "modules").glob("*.py"), *(ROOT / "plugins" / "doc_fragments").glob("*.py")]
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)):
                continue
            target = node.targets[0]
            if not (isinstance(target, ast.Name) and target.id in ("DOCUMENTATION", "RETURN")):
                continue
            doc = yaml.safe_load(node.value.value) or {}
            names |= _doc_keys(doc.get("options") if target.id == "DOCUMENTATION" else doc)
            names.add(path.stem)
    return names


@cache
def _ansible_keywords() -> set[str]:
    from ansible.playbook.block import Block
    from ansible.playbook.play import Play
    from ansible.playbook.role_include import IncludeRole
    from ansible.playbook.task import Task

    return {name for cls in (Play, Block, Task, IncludeRole) for name in cls.fattributes}


def _known(name: str) -> bool:
    """A variable, a name the code sets, or one of this collection's module options or return keys."""
    return (
        name in _spec_variables()
        or name in _set_by_the_code()
        or name in _module_names()
        or name in NOT_VARIABLES
        # Ansible's own connection and magic variables.
        or name.startswith("ansible_")
    )


def _known_key(name: str) -> bool:
    """The key of a backticked `key: value`: a variable, a module option or an Ansible keyword."""
    return _known(name) or name in _ansible_keywords()


def _code(text: str):
    """(line number, code, fenced) of every inline code span and of every line of a fenced block."""
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        if in_fence:
            yield number, line, True
            continue
        for match in re.finditer(r"(`+)(.+?)\1", line):
            yield number, match.group(2), False


def _unknown_names() -> list[str]:
    problems = []
    for path in _doc_files():
        for number, code, fenced in _code(path.read_text()):
            where = f"{path.relative_to(ROOT)}:{number}"
            for name in _PREFIXED.findall(code):
                if not _known(name):
                    problems.append(f"{where}: `{name}` is not a variable of any role's argument spec")
            for name in _EXTRA_VAR.findall(code):
                if not _known(name):
                    problems.append(f"{where}: `-e {name}=...` is not a variable of any role's argument spec")
            # A backticked `key: value` names a variable; in a fenced block (YAML, shell) most keys
            # are keywords and module options, and only the prefixed names above are checked.
            key = None if fenced else _KEY_VALUE.match(code)
            if key and not key.group(1).startswith(PREFIXES) and not _known_key(key.group(1)):
                problems.append(f"{where}: `{key.group(1)}: ...` is not a variable of any role's argument spec")
    return problems


def test_there_are_specs_and_documents():
    assert len(_argument_specs()) >= 12
    assert len(_spec_variables()) > 300
    assert len(_doc_files()) > 20


def test_documented_names_are_variables():
    problems = _unknown_names()
    assert not problems, "\n".join(problems)


def test_public_role_variables_are_documented():
    general = "\n".join(
        path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))] if path.is_file()
    )
    missing = []
    for role, entry_points in _argument_specs().items():
        if role.startswith("_"):
            continue
        readme = ROLES / role / "README.md"
        text = general + "\n" + (readme.read_text() if readme.is_file() else "")
        for entry_point, options in entry_points.items():
            for name in options:
                if name.startswith("_"):
                    continue
                if not re.search(r"(?<![\w.])" + re.escape(name) + r"(?!\w)", text):
                    missing.append(f"{role} ({entry_point}): {name}")
    assert not missing, "variables documented nowhere (README.md, docs/, the role's README.md):\n" + "\n".join(
        sorted(set(missing))
    )
