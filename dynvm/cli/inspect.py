"""`dynvm show NAME` and `dynvm summary`: one VM in full, and where I stand (my VMs by OS
and state, my quota and what I use of it, my requests still being built)."""

from __future__ import annotations

import json
import time
from collections import Counter

import click

from dynvm.cli.client import client_for, run_body, terminal
from dynvm.cli.times import span, when
from dynvm.client.http import ClientError


@click.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Everything about one VM: owner, address, host, state, age, time left, its request."""
    def body() -> None:
        client = client_for(ctx)
        vm = client.vm(name)
        req = None
        if vm.get("request_id"):
            try:
                req = client.request(vm["request_id"])
            except ClientError:  # a request record may be gone: the VM is still shown
                req = None
        if as_json:
            click.echo(json.dumps({"vm": vm, "request": req}, indent=2, sort_keys=True))
            return
        now = time.time()
        rows = [("name", vm["name"]), ("owner", vm.get("owner", "")), ("os", vm.get("os", "")),
                ("state", vm.get("state", "")), ("ip", vm.get("ip") or "-"),
                ("host", f"xenhost{vm.get('host', '')}"),
                ("created", f"{when(vm.get('created'))} ({span(now - vm['created'])} ago)"
                 if vm.get("created") else "-"),
                ("expires", f"{when(vm.get('expires'))} (in {span(vm['expires'] - now)})"
                 if vm.get("expires") else "-"),
                ("labels", ", ".join(vm.get("labels") or []) or "-"),
                ("request", vm.get("request_id") or "-")]
        if req is not None:
            step = next((v for v in req.get("vms", []) if v.get("name") == vm["name"]), None)
            rows.append(("request state", req.get("state", "")))
            if step is not None:
                rows.append(("build step", step.get("step", "")
                             + (f": {step['reason']}" if step.get("reason") else "")))
        width = max(len(k) for k, _ in rows)
        for key, value in rows:
            click.echo(f"{key:<{width}}  {value}")
    run_body(body)


@click.command("summary")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def summary(ctx: click.Context, as_json: bool) -> None:
    """My VMs by OS and state, my quota and what I use of it, what is queued for me."""
    def body() -> None:
        client = client_for(ctx)
        quota = client.quota()
        vms = client.vms(owner=quota["owner"])
        queued = client.in_flight()
        if as_json:
            click.echo(json.dumps({"quota": quota, "vms": vms, "in_flight": queued},
                                  indent=2, sort_keys=True))
            return
        click.echo(f"owner {quota['owner']}")
        limits, used = quota["limits"], quota["usage"]
        parts = []
        for key, unit in (("vms", "VMs"), ("vcpus", "vCPUs"), ("memory_gib", "GiB memory")):
            cap = limits.get(key)
            parts.append(f"{used.get(key, 0)} / {cap if cap is not None else 'no limit'} {unit}")
        click.echo("quota: " + ", ".join(parts))
        if vms:
            from rich.table import Table
            counts = Counter((vm.get("os", ""), vm.get("state", "")) for vm in vms)
            states = sorted({st for _, st in counts})
            table = Table(box=None, pad_edge=False, header_style="bold")
            for col in ("os", *states, "total"):
                table.add_column(col, justify="left" if col == "os" else "right")
            for os_key in sorted({o for o, _ in counts}):
                row = [counts.get((os_key, st), 0) for st in states]
                table.add_row(os_key, *(str(n) for n in row), str(sum(row)))
            terminal().print(table)
            soon = min(vms, key=lambda v: v.get("expires") or float("inf"))
            if soon.get("expires"):
                click.echo(f"next to expire: {soon['name']} in "
                           f"{span(soon['expires'] - time.time())}")
        else:
            click.echo("no VMs")
        if queued:
            click.echo(f"being built: {len(queued)} request(s)")
            for req in queued:
                steps = Counter(v.get("step", "") for v in req.get("vms", []))
                where = ", ".join(f"{n} {step}" for step, n in sorted(steps.items()))
                click.echo(f"  {req['id']}  {req.get('count', '')} x {req.get('os', '')}  "
                           f"since {when(req.get('created'))}  {where}")
        else:
            click.echo("nothing being built for you")
    run_body(body)
