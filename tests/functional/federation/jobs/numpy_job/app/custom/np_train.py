# Copyright: federated.nvflare contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A tiny Client API trainer for the job module's tests: adds 1 to every weight.

--sleep N   sleep N seconds per round (for timeout and abort tests)
--fail      raise on the first task (a job whose train script fails)
--fail-on S raise on the first task on site S only
"""

import argparse
import time

import nvflare.client as flare


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--fail-on", default="")
    args = parser.parse_args()
    flare.init()
    while flare.is_running():
        model = flare.receive()
        if model is None:
            break
        if args.fail or args.fail_on == flare.get_site_name():
            raise RuntimeError(f"np_train.py failed on purpose on {flare.get_site_name()}")
        time.sleep(args.sleep)
        params = {k: v + 1 for k, v in model.params.items()}
        flare.send(flare.FLModel(params=params, metrics={"accuracy": float(model.current_round or 0)}))


if __name__ == "__main__":
    main()
