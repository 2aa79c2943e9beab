#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.ops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
module: nginx_upstream
short_description: Mark one server of an nginx upstream up or down, test the configuration and reload nginx
version_added: 0.3.0
author: runbook.ops contributors (!UNKNOWN)
description:
  - Adds or removes the C(down) parameter of one C(server) line of an C(upstream) block in an nginx configuration
    file, so nginx stops (or starts again) sending new requests to that backend - the drain step of a rolling restart.
  - The file is best a small include file of its own, for example C(upstream app { server 127.0.0.1:8781;
    server 127.0.0.1:8782 down; }). Only the one parameter changes; comments, layout and everything else stay as
    they were.
  - The new text is written atomically (owner and mode kept), then C(nginx -t) tests the main configuration that
    includes it, then nginx is reloaded. When the test or the reload fails, the previous text is written back and the
    task fails with nginx's own message.
  - Marking down the last server of the upstream that is up (C(backup) servers do not count) is refused unless
    O(allow_all_down), since nginx would answer every request with 502.
  - A reload is graceful - requests in flight finish on the old worker processes - so wait for them (the
    C(rolling_restart) role waits C(rolling_restart_drain_seconds)) before stopping the backend.
options:
  path:
    description: The configuration file that holds the C(upstream) block.
    type: path
    required: true
  upstream:
    description: The name of the C(upstream) block.
    type: str
    required: true
  server:
    description: The server's address exactly as written in the file, for example V(127.0.0.1:8781) or V(unix:/run/app.sock).
    type: str
    required: true
  state:
    description: V(down) to stop sending new requests to the server, V(up) to send them again.
    type: str
    choices: [up, down]
    required: true
  allow_all_down:
    description: Allow marking down the last server that is up.
    type: bool
    default: false
  nginx_binary:
    description: The nginx executable, for the test and the default reload.
    type: str
    default: nginx
  nginx_config:
    description:
      - The main configuration file (C(nginx -c)) that includes O(path). Used by the test and the default reload.
      - Without it, nginx's compiled-in default (usually C(/etc/nginx/nginx.conf)).
    type: path
  nginx_directives:
    description:
      - Global directives given on nginx's command line (C(nginx -g)), for example V(pid /run/app-nginx.pid;), when the
        running master was started with them. Used by the test and the default reload.
    type: str
  validate:
    description: Test the configuration with C(nginx -t -c) O(nginx_config) after writing, and put the old text back when
      it fails.
    type: bool
    default: true
  reload:
    description: Reload nginx after a change. Nothing is reloaded when the server already has the state.
    type: bool
    default: true
  reload_command:
    description:
      - An argument list that reloads nginx instead of C(nginx -c) O(nginx_config) C(-s reload), for example
        V([systemctl, reload, nginx]). Not run through a shell.
    type: list
    elements: str
attributes:
  check_mode:
    support: full
    description: Says whether the server's state would change, and shows the edit with diff mode; writes and reloads nothing.
  diff_mode:
    support: full
    description: The file's text before and after.
  idempotent:
    support: full
    description: A server that already has the state is left alone, and nginx is not reloaded.
seealso:
  - module: runbook.ops.compose_release
    description: Restarts one service of a Compose project and waits until it is healthy.
'''

EXAMPLES = r'''
- name: Drain the first replica
  runbook.ops.nginx_upstream:
    path: /etc/nginx/conf.d/app-upstream.conf
    upstream: app
    server: 127.0.0.1:8781
    state: down

- name: Back in, with an nginx started with its own configuration and pid file
  runbook.ops.nginx_upstream:
    path: /srv/proxy/upstream.conf
    upstream: app
    server: 127.0.0.1:8781
    state: up
    nginx_config: /srv/proxy/nginx.conf
    nginx_directives: "pid /srv/proxy/nginx.pid;"

- name: nginx in a container
  runbook.ops.nginx_upstream:
    path: /srv/proxy/conf.d/upstream.conf
    upstream: app
    server: 127.0.0.1:8782
    state: down
    validate: false
    reload_command: [docker, exec, proxy, nginx, -s, reload]
'''

RETURN = r'''
msg:
  description: What was done.
  returned: always
  type: str
  sample: "server 127.0.0.1:8781 of upstream app marked down in /etc/nginx/conf.d/app-upstream.conf; nginx -t passed,
    nginx reloaded"
state_before:
  description: The server's state before, V(up) or V(down).
  returned: success
  type: str
  sample: up
servers:
  description: The servers of the upstream as they were before the change (address, down, params, line).
  returned: success
  type: list
  elements: dict
  sample: [{address: "127.0.0.1:8781", down: false, params: [], line: 2},
           {address: "127.0.0.1:8782", down: false, params: [max_fails=1], line: 3}]
validated:
  description: Whether C(nginx -t) tested the change.
  returned: always
  type: bool
  sample: true
reloaded:
  description: Whether nginx was reloaded.
  returned: always
  type: bool
  sample: true
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.ops.plugins.module_utils import _nginx
from ansible_collections.runbook.ops.plugins.module_utils._errors import RunbookError
from ansible_collections.runbook.ops.plugins.module_utils._module_errors import fail_with


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "upstream": {"type": "str", "required": True},
            "server": {"type": "str", "required": True},
            "state": {"type": "str", "required": True, "choices": list(_nginx.STATES)},
            "allow_all_down": {"type": "bool", "default": False},
            "nginx_binary": {"type": "str", "default": "nginx"},
            "nginx_config": {"type": "path"},
            "nginx_directives": {"type": "str"},
            "validate": {"type": "bool", "default": True},
            "reload": {"type": "bool", "default": True},
            "reload_command": {"type": "list", "elements": "str"},
        },
        supports_check_mode=True,
    )
    params = module.params
    commands = _nginx.NginxCommands(binary=params["nginx_binary"], config=params["nginx_config"],
                                    directives=params["nginx_directives"], reload_command=params["reload_command"])

    def run(argv):
        return module.run_command(argv)

    upstream = _nginx.UpstreamFile(params["path"], commands, run)
    where = "server %s of upstream %s" % (params["server"], params["upstream"])
    result = {"changed": False, "validated": False, "reloaded": False}
    try:
        plan = upstream.plan(params["upstream"], params["server"], params["state"], params["allow_all_down"])
        result.update(state_before=plan["server_before"], servers=[s.as_dict() for s in plan["servers"]])
        result["changed"] = plan["after"] != plan["before"]
        if module._diff and result["changed"]:
            result["diff"] = {"before": plan["before"], "after": plan["after"],
                              "before_header": params["path"], "after_header": params["path"]}
        if not result["changed"]:
            result["msg"] = "%s is %s already in %s; nothing to do" % (where, params["state"], params["path"])
        elif module.check_mode:
            result["msg"] = "%s would be marked %s in %s (check mode: nothing written, nginx not reloaded)" % (
                where, params["state"], params["path"])
        else:
            result.update(upstream.apply(plan, validate=params["validate"], reload=params["reload"]))
            steps = [("nginx -t passed" if result["validated"] else "not tested"),
                     ("nginx reloaded" if result["reloaded"] else "nginx not reloaded")]
            result["msg"] = "%s marked %s in %s; %s" % (where, params["state"], params["path"], ", ".join(steps))
    except RunbookError as exc:
        # A change that failed its test or reload was written back: nothing changed.
        fail_with(module, exc, changed=False, **{k: v for k, v in result.items() if k != "changed"})
    module.exit_json(**result)


if __name__ == "__main__":
    main()
