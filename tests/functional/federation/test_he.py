"""Homomorphic encryption on kits without it: the spleen job's HE variant (admin_spleen_he) given to
the plain federation, whose kits have no TenSEAL context, must stop at once saying why.

The HE variant running to completion on HE kits, with the checks that the server held ciphertexts
only, is in the container layer (tests/container), where site.yml deploys with nvflare_he=true.
"""

from __future__ import annotations

from .conftest import MODULE_TIMEOUT


def test_he_job_on_kits_without_an_he_context_fails_saying_so(module, spleen_jobs, tmp_path):
    """The job stops at once, and the job module's failure message (what the operator reads) says
    why and what to do."""
    result = module(
        "job",
        {"job_dir": str(spleen_jobs["he"]), "timeout": 300, "poll_interval": 1, "download_dir": str(tmp_path)},
        timeout=MODULE_TIMEOUT + 100,
    )
    assert result.failed and result.rc != 0
    text = " ".join(result["msg"].split())
    print(text)
    assert result["status"] != "FINISHED:COMPLETED"
    assert "startup kit has no HE context" in text and "server_context.tenseal is missing" in text, text
    assert "nvflare_he: true" in text, text
