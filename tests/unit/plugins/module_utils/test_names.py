from __future__ import annotations

import pytest

from ansible_collections.federated.nvflare.plugins.module_utils import _names


@pytest.mark.parametrize(
    "kind,value",
    [
        ("org", "nvidia_1"),
        ("site", "site-1"),
        ("admin", "admin@nvidia.com"),
        ("server", "fl.example.org"),
        ("server", "localhost"),
        ("pin", "abc123"),
        ("role", "lead"),
    ],
)
def test_valid(kind, value):
    assert _names.check(kind, value) is None


@pytest.mark.parametrize(
    "kind,value,fragment",
    [
        ("org", "my-org", "no hyphen"),
        ("site", "site 1", "site name 'site 1'"),
        ("admin", "admin", "email"),
        ("server", "-bad.example", "hostname"),
        ("server", "a_b.example", "hostname"),
        ("role", "boss", "project_admin"),
    ],
)
def test_invalid_names_say_which_and_why(kind, value, fragment):
    msg = _names.check(kind, value)
    assert msg is not None and fragment in msg and repr(value) in msg


def test_pin_error_does_not_echo_the_pin():
    msg = _names.check("pin", "s3cr3t-pin")
    assert msg and "s3cr3t-pin" not in msg


def test_duplicates():
    assert _names.duplicates(["a", "b", "a", "c", "b", "a"]) == ["a", "b"]
