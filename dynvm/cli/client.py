"""`dynvm get/list/show/summary/release/extend/status/capacity/history`: the v1 API from a
terminal.

Exit codes: 0 done; 1 a request that failed or was cancelled; 2 no URL or
token configured; 3 network error (cannot connect, timeout); 4 the server
refused the request (4xx); 5 the server failed (5xx).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from dynvm.cli.times import Moment, span, when
from dynvm.client.http import Client, ClientError, settings
from dynvm.core.lifecycle import FINAL_STEPS, REQUEST_END, RequestState, Step

ENDED_STEPS = FINAL_STEPS - {Step.READY}  # a VM that will not be ready
# A VM's steps in build order; the progress bar runs from the first to `ready`.
STEPS = [s for s in Step if s not in ENDED_STEPS]
FINISHED = REQUEST_END
POLL_SECS = 20.0


# The helpers every client command module shares (snapshots, keys, inspect):

def client_for(ctx: click.Context) -> Client:
    """The HTTP client of the command's --url/--token/--timeout (else the environment)."""
    opts = ctx.find_root().meta.get("dynvm_client", {})
    return Client(settings(opts.get("url"), opts.get("token")),
                  timeout=opts.get("timeout", 30.0))


def run_body(fn: Callable[[], int | None]) -> None:
    """Run a command body; turn client errors into a message and an exit code."""
    try:
        code = fn() or 0
    except ClientError as exc:
        click.echo(f"dynvm: {exc.message}", err=True)
        for e in exc.body.get("errors", [])[:10]:
            click.echo(f"  {'.'.join(e.get('loc', []))}: {e.get('msg')}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code)


def terminal() -> Any:
    """A rich console on stdout (imported here, so `dynvm --help` stays light)."""
    from rich.console import Console
    return Console()


def _vm_table(vms: list[dict[str, Any]], now: float, width: int) -> Any:
    """My VMs, soonest to expire first, within `width` columns: every column but the name
    keeps its whole text and a long name is cut with an ellipsis, never wrapped; the owner
    only when there is more than one."""
    from rich.table import Table
    owners = len({vm.get("owner") for vm in vms}) > 1
    cols = ["name"] + (["owner"] if owners else []) + ["ip", "os", "xenhost", "state", "age",
                                                        "left"]
    rows = []
    for vm in sorted(vms, key=lambda v: (v.get("expires") or 0, v["name"])):
        rows.append([vm["name"]] + ([str(vm.get("owner", ""))] if owners else []) + [
            vm.get("ip") or "-", str(vm.get("os", "")), str(vm.get("host", "")),
            str(vm.get("state", "")),
            span(now - vm["created"]) if vm.get("created") else "-",
            span(vm["expires"] - now) if vm.get("expires") else "-"])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    room = width - sum(w + 2 for w in widths[1:]) - 1  # two spaces between columns
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("name", overflow="ellipsis", no_wrap=True,
                     max_width=max(8, min(widths[0], room)))
    for col, w in zip(cols[1:], widths[1:], strict=True):
        table.add_column(col, no_wrap=True, min_width=w,
                         justify="right" if col in ("age", "left") else "left")
    for row in rows:
        table.add_row(*row)
    return table


def _request_table(req: dict[str, Any]) -> Any:
    from rich.table import Table
    table = Table(title=f"request {req['id']}: {req['state']}")
    for col in ("name", "ip", "host", "step", "reason"):
        table.add_column(col)
    for vm in req["vms"]:
        table.add_row(vm["name"], vm.get("ip") or "-", str(vm.get("host") or "-"), vm["step"],
                      vm.get("reason") or "")
    return table


def about(secs: float | None) -> str:
    """An ETA in words: "about 4 min"."""
    if secs is None:
        return "no estimate yet"
    if secs < 90:
        return f"about {max(round(secs), 1)} s"
    if secs < 90 * 60:
        return f"about {round(secs / 60)} min"
    return f"about {secs / 3600:.1f} h"


def waiting_line(req: dict[str, Any]) -> str | None:
    """Where a queued request stands, in words ("queued, position 3 of 7, about 4 min")."""
    q = req.get("queue") or {}
    if req["state"] != RequestState.QUEUED:
        return None
    where = f", position {q['position']} of {q['waiting']}" if q.get("position") else ""
    return f"{RequestState.QUEUED}{where}, {about(q.get('eta_secs'))}: {q.get('reason', '')}"


def _watch(client: Client, req: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """Follow a request to its end: where it stands while queued, then one progress bar
    per VM, unless `quiet`."""
    if quiet:
        while req["state"] not in FINISHED:
            req = client.request(req["id"], wait=POLL_SECS)
        return req
    shown = None
    while req["state"] == RequestState.QUEUED:
        line = waiting_line(req)
        if line != shown:
            click.echo(line)
            shown = line
        req = client.request(req["id"], wait=POLL_SECS)
    from rich.progress import BarColumn, Progress, TextColumn
    from rich.table import Column
    total = len(STEPS) - 1
    # The step column folds onto more lines rather than cut a reason short.
    with Progress(TextColumn("{task.description:<20}"), BarColumn(),
                  TextColumn("{task.fields[step]}",
                             table_column=Column(ratio=1, overflow="fold", no_wrap=False)),
                  console=terminal(), transient=False) as bars:
        tasks: dict[str, Any] = {}
        while True:
            for vm in req["vms"]:
                step = vm["step"]
                done = total if step in ENDED_STEPS else STEPS.index(step) if step in STEPS else 0
                # The whole reason: the bar's line wraps rather than cut it short.
                label = f"{step}: {vm.get('reason', '')}" if step in ENDED_STEPS else step
                if vm.get("ip") and step not in ENDED_STEPS:
                    label += f" ({vm['ip']})"
                if vm["name"] not in tasks:
                    tasks[vm["name"]] = bars.add_task(vm["name"], total=total, step=label)
                bars.update(tasks[vm["name"]], completed=done, step=label)
            if req["state"] in FINISHED:
                return req
            req = client.request(req["id"], wait=POLL_SECS)


def _finish(req: dict[str, Any], as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps(req, indent=2, sort_keys=True))
    else:
        terminal().print(_request_table(req))
        if req.get("error"):
            click.echo(f"error: {req['error']}", err=True)
    return 0 if req["state"] in (RequestState.DONE, RequestState.PARTIAL, RequestState.RUNNING,
                                 RequestState.QUEUED) else 1


@click.command("get")
@click.argument("os")
@click.option("-n", "--count", default=1, show_default=True, type=click.IntRange(1, 100))
@click.option("--name", help="VM name (or prefix for several); generated when absent.")
@click.option("--lease", "lease", type=click.IntRange(min=1), help="Lease in minutes.")
@click.option("--cpus", type=click.IntRange(min=1))
@click.option("--memory", "memory_gib", type=click.IntRange(min=1), help="GiB.")
@click.option("--label", "labels", multiple=True, help="Host label (repeatable).")
@click.option("--host", type=click.IntRange(min=1), help="Only this xenhostN.")
@click.option("--check-ssh", is_flag=True, help="Keep a VM only if its SSH port answers.")
@click.option("--ssh-key", "ssh_keys", multiple=True, type=click.File("r"),
              help="Public key file put on the VMs (repeatable), beside my registered keys.")
@click.option("--hostname", help="The VMs' hostname (default: each VM's name).")
@click.option("--user-data", type=click.File("r"), help="A #cloud-config file for first boot.")
@click.option("--queue/--no-queue", default=True, show_default=True,
              help="With no room now, wait in the queue (--no-queue: refused at once).")
@click.option("--priority", type=click.IntRange(0, 100),
              help="Queue priority, higher first (capped by your priority.max).")
@click.option("--max-wait", "max_wait", type=click.IntRange(min=1),
              help="Longest wait in the queue, in minutes.")
@click.option("--wait/--no-wait", default=False, help="Follow the request to its end.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def get(ctx: click.Context, os: str, count: int, name: str | None, lease: int | None,
        cpus: int | None, memory_gib: int | None, labels: tuple[str, ...], host: int | None,
        check_ssh: bool, ssh_keys: tuple[Any, ...], hostname: str | None, user_data: Any,
        queue: bool, priority: int | None, max_wait: int | None, wait: bool,
        as_json: bool) -> None:
    """Ask for COUNT VMs of OS."""
    def body() -> int:
        client = client_for(ctx)
        keys = [line.strip() for f in ssh_keys for line in f.read().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
        req = client.create(os=os, count=count, name=name, lease_minutes=lease, cpus=cpus,
                            memory_gib=memory_gib, labels=list(labels) or None, host=host,
                            check_ssh=check_ssh or None, ssh_keys=keys or None,
                            hostname=hostname,
                            user_data=user_data.read() if user_data is not None else None,
                            queue=None if queue else False, priority=priority,
                            max_wait_minutes=max_wait)
        if not wait:
            if as_json:
                click.echo(json.dumps(req, indent=2, sort_keys=True))
            else:
                click.echo(f"request {req['id']}: {', '.join(req['names'])}")
                if (line := waiting_line(req)) is not None:
                    click.echo(line)
                click.echo(f"follow it with: dynvm status {req['id']} --wait")
            return 0
        return _finish(_watch(client, req, as_json), as_json)
    run_body(body)


@click.command("status")
@click.argument("request_id")
@click.option("--wait", is_flag=True, help="Follow the build to its end.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def status(ctx: click.Context, request_id: str, wait: bool, as_json: bool) -> None:
    """Show a request and the step each of its VMs has reached."""
    def body() -> int:
        client = client_for(ctx)
        req = client.request(request_id)
        if wait:
            req = _watch(client, req, as_json)
        return _finish(req, as_json)
    run_body(body)


@click.command("list")
@click.option("--owner", help="Another owner's VMs (admins).")
@click.option("--os", "os_key")
@click.option("--host", type=click.IntRange(min=1))
@click.option("--state")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_vms(ctx: click.Context, owner: str | None, os_key: str | None, host: int | None,
             state: str | None, as_json: bool) -> None:
    """List my VMs (an admin token sees every VM), soonest to expire first."""
    def body() -> None:
        vms = client_for(ctx).vms(owner=owner, os=os_key, host=host, state=state)
        if as_json:
            click.echo(json.dumps(vms, indent=2, sort_keys=True))
        elif not vms:
            click.echo("no VMs")
        else:
            console = terminal()
            console.print(_vm_table(vms, time.time(), console.width))
    run_body(body)


@click.command("release")
@click.argument("names", nargs=-1)
@click.option("--all-mine", is_flag=True, help="Release every VM of my token's owner.")
@click.pass_context
def release(ctx: click.Context, names: tuple[str, ...], all_mine: bool) -> None:
    """Release VMs by name (destroyed with their disks)."""
    def body() -> int:
        if bool(names) == all_mine:
            raise click.UsageError("give VM names or --all-mine (not both)")
        client = client_for(ctx)
        todo = list(names)
        if all_mine:
            me = client.quota()["owner"]
            todo = [vm["name"] for vm in client.vms(owner=me)]
            if not todo:
                click.echo("no VMs to release")
        failed = 0
        for name in todo:
            try:
                client.release(name)
                click.echo(f"released {name}")
            except ClientError as exc:
                if len(todo) == 1:
                    raise
                failed = failed or exc.exit_code
                click.echo(f"dynvm: {name}: {exc.message}", err=True)
        return failed
    run_body(body)


@click.command("extend")
@click.argument("name")
@click.argument("minutes", type=click.IntRange(min=1))
@click.pass_context
def extend(ctx: click.Context, name: str, minutes: int) -> None:
    """Move a VM's expiry to now + MINUTES."""
    def body() -> None:
        vm = client_for(ctx).extend(name, minutes)
        click.echo(f"{vm['name']} now expires {when(vm['expires'])}")
    run_body(body)


@click.command("capacity")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def capacity(ctx: click.Context, as_json: bool) -> None:
    """How many more VMs of each OS fit now, per label."""
    def body() -> None:
        rows = client_for(ctx).capacity()
        if as_json:
            click.echo(json.dumps(rows, indent=2, sort_keys=True))
            return
        from rich.table import Table
        labels = sorted({lbl for r in rows for lbl in r["by_label"]} - {"default"})
        table = Table()
        for col in ("os", "default", *labels):
            table.add_column(col)
        for r in rows:
            table.add_row(r["os"], *(str(r["by_label"].get(c, 0)) for c in ("default", *labels)))
        terminal().print(table)
    run_body(body)


@click.command("history")
@click.option("--owner")
@click.option("--os", "os_key")
@click.option("--since", type=Moment(), help="2h, 3d, 1w (ago), an ISO date (UTC) or epoch.")
@click.option("--until", type=Moment(), help="As --since.")
@click.option("--page", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def history(ctx: click.Context, owner: str | None, os_key: str | None, since: float | None,
            until: float | None, page: int, as_json: bool) -> None:
    """VM history, newest first."""
    def body() -> None:
        data = client_for(ctx).history(owner=owner, os=os_key, since=since, until=until, page=page)
        if as_json:
            click.echo(json.dumps(data, indent=2, sort_keys=True))
            return
        from rich.table import Table
        table = Table(title=f"page {data['page']}")
        for col in ("name", "os", "owner", "state", "created", "lived (s)"):
            table.add_column(col)
        for d in data["items"]:
            table.add_row(str(d.get("name", "")), str(d.get("os", "")),
                          str(d.get("owner", d.get("username", ""))), str(d.get("state", "")),
                          when(d.get("created_time")), str(d.get("live_duration_secs", "-")))
        terminal().print(table)
        if data.get("next_page"):
            click.echo(f"more: --page {data['next_page']}")
    run_body(body)


COMMANDS = [get, status, list_vms, release, extend, capacity, history]


def add_options(group: click.Group, more: list[click.Command]) -> None:
    """--url/--token/--timeout on the root command, for the client commands."""
    def remember(name: str) -> Callable[[click.Context, click.Parameter, Any], Any]:
        def cb(ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
            if value is not None:
                ctx.meta.setdefault("dynvm_client", {})[name] = value
            return value
        return cb
    for name, kind, text in (("url", str, "dynvm URL (else DYNVM_URL)"),
                             ("token", str, "API token (else DYNVM_TOKEN)"),
                             ("timeout", float, "HTTP timeout in seconds")):
        group.params.append(click.Option([f"--{name}"], type=kind, expose_value=False,
                                         is_eager=True, callback=remember(name), help=text))
    for cmd in COMMANDS + more:
        group.add_command(cmd)

