"""TemplateWatch compares a host's templates once per view of them, and follows every change."""

from __future__ import annotations

from dataclasses import replace

from dynvm.config import Config
from dynvm.core.templates import TemplateWatch
from tests.core.test_capacity import host_cfg, member, view


def test_a_template_gone_and_back_is_seen_at_the_next_view() -> None:
    host = host_cfg()
    cfg = Config(hosts={1: host})
    watch = TemplateWatch()
    whole = view(member())
    watch.see(cfg, host, whole)
    watch.see(cfg, host, whole)  # the same view again: nothing to compare
    assert watch.notes(cfg) == []
    lacking = replace(whole, templates={"tmpl-cnt7.7": "OpaqueRef:t1"})
    watch.see(cfg, host, lacking)
    (note,) = watch.notes(cfg)
    assert "windows is not served on xenhost1" in note
    watch.see(cfg, host, replace(lacking, age_secs=3.0))  # same templates, a later age
    assert len(watch.notes(cfg)) == 1
    watch.see(cfg, host, view(member()))  # a new view with it back
    assert watch.notes(cfg) == []
    # A reload that changed the host: the new host is compared even with the same view.
    renamed = replace(host, os={"centos": replace(host.os["centos"], template="tmpl-other")})
    cfg2 = Config(hosts={1: renamed})
    watch.see(cfg2, renamed, whole)
    assert ["centos" in n for n in watch.notes(cfg2)] == [True]
