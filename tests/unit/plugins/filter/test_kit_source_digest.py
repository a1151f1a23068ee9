"""The kit_source_digest filter: the controller's side of participant_info's staged-copy check."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.federated.nvflare.plugins.filter.kit_source_digest import FilterModule, kit_source_digest


def test_a_zip_digests_to_its_sha256(kits):
    want = hashlib.sha256(kits.site1_zip.read_bytes()).hexdigest()
    assert kit_source_digest(kits.site1_zip) == "sha256:" + want
    assert FilterModule().filters()["kit_source_digest"] is kit_source_digest


def test_a_folder_digests_to_its_tree_with_modes(kits, tmp_path):
    copy = tmp_path / "site-1"
    shutil.copytree(kits.site1_dir, copy)
    first = kit_source_digest(copy)
    assert first.startswith("tree:") and first == kit_source_digest(kits.site1_dir)
    (copy / "readme.txt").chmod(0o600)
    assert kit_source_digest(copy) != first


def test_a_missing_source_says_where_it_looked(tmp_path):
    with pytest.raises(AnsibleFilterError, match="neither a file nor a folder on the controller"):
        kit_source_digest(tmp_path / "nothing.zip")
