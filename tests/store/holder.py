"""A lease holder process for the stale-holder test (acts like a CRM master).

Usage: python holder.py CONTROL_SOCKET RESUMED_FLAG_FILE OUT_FILE
Acquires the manager lease, then keeps renewing it and writing manager_status with its
epoch, one JSON line per command to OUT_FILE: {"after_resume": bool, "op", "result"}.
After 5 commands sent once RESUMED_FLAG_FILE exists, it exits.
"""

from __future__ import annotations

import json
import os
import sys
import time

if __name__ == "__main__":  # run as a script: import tests.support from the repo root
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harepl.store import vocabulary as C  # noqa: E402
from tests.support.localcluster import Member  # noqa: E402


def main() -> None:
    control, flag, out = sys.argv[1:4]
    m = Member("holder", os.path.dirname(control), "")
    f = open(out, "a", buffering=1)

    def submit(cmd: dict) -> dict:
        after = os.path.exists(flag)
        try:
            r = m.call({"call": "submit", "cmd": cmd, "timeout": 5})
        except RuntimeError as e:
            r = {"ok": False, "reason": "unavailable", "error": str(e)}
        f.write(json.dumps({"after_resume": after, "op": cmd["op"], "id": cmd["id"], "result": r}) + "\n")
        return r

    cur = m.call({"call": "read", "what": "lease", "args": ["manager"]})
    r = submit(C.lease_acquire("manager", "old-master", cur["epoch"], cur["seq"]))
    epoch = r["epoch"]
    after_resume = 0
    while after_resume < 6:
        if os.path.exists(flag):
            after_resume += 1
        submit(C.lease_renew("manager", "old-master", epoch))
        submit(C.manager_status_set({"master_node": "old-master"}, epoch))
        time.sleep(0.1)


if __name__ == "__main__":
    main()
