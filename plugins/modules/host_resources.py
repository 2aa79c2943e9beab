#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: host_resources
short_description: Rate memory, CPU, load and swap use of a Linux host from /proc
version_added: 0.2.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Reads C(/proc/meminfo), C(/proc/stat) and C(/proc/loadavg) of the managed host (no C(awk), no shell) and
    rates each figure V(ok), V(warning) or V(critical) against its levels. A value above the warning level is a
    warning, above the critical level critical.
  - Memory used is C(1 - MemAvailable / MemTotal). CPU busy is the non-idle share of the aggregate C(cpu) line of
    C(/proc/stat) over O(sample_seconds) (idle and iowait count as idle). Load is the 1-minute load average
    divided by the number of CPUs; swap is the used share of C(SwapTotal).
  - Read-only. Linux only; on another system the task fails with a message saying so.
extends_documentation_fragment:
  - runbook.ops.read_only_check
options:
  memory_warn_percent:
    description: Memory use above this percent is a warning.
    type: float
    default: 80
  memory_crit_percent:
    description: Memory use above this percent is critical.
    type: float
    default: 95
  cpu:
    description: Sample CPU use over O(sample_seconds). V(false) skips the sample and the C(cpu) finding.
    type: bool
    default: true
  cpu_warn_percent:
    description: CPU busy share above this percent is a warning.
    type: float
    default: 70
  cpu_crit_percent:
    description: CPU busy share above this percent is critical.
    type: float
    default: 90
  sample_seconds:
    description: Seconds between the two readings of C(/proc/stat), from V(0.1) to V(60).
    type: float
    default: 1
  load_warn_per_core:
    description: 1-minute load average per CPU above which the host is a warning. The C(load) finding is made
      only when this or O(load_crit_per_core) is set.
    type: float
  load_crit_per_core:
    description: 1-minute load average per CPU above which the host is critical.
    type: float
  swap_warn_percent:
    description: Swap use above this percent is a warning. The C(swap) finding is made only when this or
      O(swap_crit_percent) is set; a host without swap is ok.
    type: float
  swap_crit_percent:
    description: Swap use above this percent is critical.
    type: float
seealso:
  - module: runbook.ops.check_report
    description: Turns the findings into the daily report.
  - module: runbook.ops.path_check
    description: Disk usage.
'''

EXAMPLES = r'''
- name: Memory, CPU and load of the host
  runbook.ops.host_resources:
    memory_warn_percent: 80
    memory_crit_percent: 95
    cpu_warn_percent: 70
    cpu_crit_percent: 90
    sample_seconds: 2
    load_warn_per_core: 1.5
    load_crit_per_core: 3
    fail_on: never
  register: resources
'''

RETURN = r'''
state:
  description: The worst state of the findings.
  returned: always
  type: str
  sample: ok
findings:
  description: C(memory), C(cpu) (unless O(cpu=false)), C(load) and C(swap) (when their levels are set), each with
    C(check), C(state), C(value), C(unit) and C(detail).
  returned: always
  type: list
  elements: dict
  sample: [{check: memory, state: ok, value: 4.6, unit: "%", detail: "4.6% used, 22.4 of 23.5 GiB available (warning over 80%, critical over 95%)"},
           {check: cpu, state: ok, value: 12.5, unit: "%", detail: "12.5% busy over 1 s (warning over 70%, critical over 90%)"}]
figures:
  description: The raw figures read - memory fields in bytes, CPU busy percent, sample seconds and load averages.
  returned: always
  type: dict
  sample: {memory: {MemTotal: 25276502016, MemAvailable: 24102727680, SwapTotal: 0, SwapFree: 0}, cpu_busy_percent: 12.5,
           sample_seconds: 1.0}
thresholds:
  description: One row per rated figure for a report's thresholds table.
  returned: always
  type: list
  elements: dict
  sample: [{metric: memory used, warning: 80, critical: 95, unit: "%"}]
msg:
  description: One line with the counts and the problems.
  returned: always
  type: str
  sample: "2 of 2 checks ok, overall ok"
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _host_resources, _status
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import exit_with_findings, fail_with


def _pair(params, warn, crit):
    if params[warn] is None and params[crit] is None:
        return None
    return params[warn], params[crit]


def main():
    module = AnsibleModule(
        argument_spec={
            "memory_warn_percent": {"type": "float", "default": 80},
            "memory_crit_percent": {"type": "float", "default": 95},
            "cpu": {"type": "bool", "default": True},
            "cpu_warn_percent": {"type": "float", "default": 70},
            "cpu_crit_percent": {"type": "float", "default": 90},
            "sample_seconds": {"type": "float", "default": 1},
            "load_warn_per_core": {"type": "float"},
            "load_crit_per_core": {"type": "float"},
            "swap_warn_percent": {"type": "float"},
            "swap_crit_percent": {"type": "float"},
            "fail_on": dict(_status.FAIL_ON_ARGSPEC),
        },
        supports_check_mode=True,
    )
    params = module.params
    memory = (params["memory_warn_percent"], params["memory_crit_percent"])
    cpu = (params["cpu_warn_percent"], params["cpu_crit_percent"]) if params["cpu"] else None
    load = _pair(params, "load_warn_per_core", "load_crit_per_core")
    swap = _pair(params, "swap_warn_percent", "swap_crit_percent")
    try:
        _host_resources.require_linux()
        result = _host_resources.measure(memory=memory, cpu=cpu, load=load, swap=swap,
                                         sample_seconds=params["sample_seconds"])
    except RunbookError as exc:
        fail_with(module, exc)
    result["thresholds"] = _host_resources.thresholds(memory, cpu, load, swap)
    exit_with_findings(module, result, params["fail_on"])


if __name__ == "__main__":
    main()
