"""Fence devices, the I/O half (the decisions are `harepl/core/fencing.py`):

- `agent.py`: run one fence agent (Debian's `fence-agents`) through the fence-agent API
  (arguments as `key=value` lines on stdin, `action=off|on|status|monitor`, exit status),
  with a timeout per action; `fence_level` runs one level's parallel devices and confirms
  each `off` with a `status`.
- `config.py`: the node's fence.cfg (Proxmox's shape; it holds credentials, so it must be
  root-only: refused otherwise), and `FenceRunner`, what `RuntimeEnv.fence_device` runs
  in the background for the CRM master.
- `bmc.py`: a real IPMI BMC per lab node (OpenIPMI's `ipmi_sim`) whose chassis power-off
  is the lab's power-off of that node's whole tree.
"""
