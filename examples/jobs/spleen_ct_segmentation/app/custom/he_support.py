# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the homomorphic-encryption variant of the spleen job (admin_spleen_he) adds to NVFlare's
HE components.

* ``HEContextCheck`` stops the job at once, with a message that says what to do, on a participant
  that cannot take part in it: no TenSEAL in its Python environment, or no HE context in its startup
  kit (a project provisioned without NVFlare's HEBuilder). Listed before NVFlare's HE components in
  the HE job's configurations, so that it is built first; they would otherwise fail with an import
  error or with "Cannot load tenseal_context ...: NO_SUCH_CONTENT". Without TenSEAL the workflow
  below raises the same message.
* ``SerializedHECrossSiteModelEval`` is NVFlare's ``HECrossSiteModelEval`` with the models to
  validate sent as serialized CKKS vectors (bytes): NVFlare 2.9 deep-copies a broadcast task's data,
  and a CKKS vector under the server's public context cannot be copied ("the current context is
  public, it doesn't hold a Secret key"), so every validate task failed. The sites' HEModelDecryptor
  deserializes them first, as it does for any model; the server still never decrypts anything.
"""

from __future__ import annotations

import importlib.util
import os

from nvflare.apis.event_type import EventType
from nvflare.apis.fl_component import FLComponent
from nvflare.apis.fl_context import FLContext

try:  # NVFlare's HE modules import TenSEAL; without it the classes below say what to do.
    from nvflare.app_opt.he.cross_site_model_eval import HECrossSiteModelEval
    from nvflare.app_opt.he.homomorphic_encrypt import serialize_nested_dict
except ImportError:
    HECrossSiteModelEval = None

FIX = (
    "provision the project with homomorphic encryption (federated.nvflare: nvflare_he: true, which adds "
    "NVFlare's HEBuilder and installs TenSEAL) and deploy the new kits, or submit the job without HE"
)


def _startup_dir() -> str | None:
    """The participant's startup folder: the job runs in <workspace>/<job id>/app_*."""
    here = os.getcwd()
    for _level in range(4):
        candidate = os.path.join(here, "startup")
        if os.path.isfile(os.path.join(candidate, "fed_server.json")) or os.path.isfile(
            os.path.join(candidate, "fed_client.json")
        ):
            return candidate
        here = os.path.dirname(here)
    return None


def problem(context_file: str, startup: str | None) -> str | None:
    """What keeps this participant out of an HE job, or None."""
    if importlib.util.find_spec("tenseal") is None:
        return f"this job aggregates under homomorphic encryption and TenSEAL is not installed here: {FIX}"
    if startup is not None and not os.path.isfile(os.path.join(startup, context_file)):
        return (
            "this job aggregates under homomorphic encryption and this participant's startup kit has no HE "
            f"context ({os.path.join(startup, context_file)} is missing): {FIX}"
        )
    return None


class HEContextCheck(FLComponent):
    def __init__(self, context_file: str = "server_context.tenseal"):
        super().__init__()
        self.context_file = context_file
        reason = problem(context_file, _startup_dir())
        if reason:
            # Raised while the job's configuration is built: the job cannot start, and the reason is
            # the first error in the participant's log.
            raise RuntimeError(reason)

    def handle_event(self, event_type: str, fl_ctx: FLContext):
        if event_type != EventType.START_RUN:
            return
        startup = fl_ctx.get_engine().get_workspace().get_startup_kit_dir()
        reason = problem(self.context_file, startup)
        if reason:
            self.log_error(fl_ctx, reason)
            self.system_panic(reason, fl_ctx)


if HECrossSiteModelEval is not None:

    class SerializedHECrossSiteModelEval(HECrossSiteModelEval):
        def _load_validation_content(self, name, load_dir, fl_ctx):
            dxo = super()._load_validation_content(name, load_dir, fl_ctx)
            if dxo is not None and isinstance(dxo.data, dict):
                serialize_nested_dict(dxo.data)
            return dxo

else:

    class SerializedHECrossSiteModelEval:  # noqa: D101  (no TenSEAL: stop with the reason)
        def __init__(self, *args, **kwargs):
            raise RuntimeError(problem("server_context.tenseal", _startup_dir()))
