# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The spleen job's initial global model: MONAI's 3D UNet with weights drawn from a fixed seed.

The server's model persistor builds the initial global model. With an unseeded random start,
two runs of the same job on the same data differ, and on small data an unlucky start can fail
to learn at all; a seed makes the job reproducible. The class adds no parameters, so its state
dict is the UNet's: the sites load it into the network they build themselves.
"""

from __future__ import annotations

import torch
from monai.networks.nets import UNet


class SeededUNet(UNet):
    def __init__(self, seed: int = 0, **kwargs):
        # The seed applies to these weights only: the process's own random state is restored.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            super().__init__(**kwargs)
