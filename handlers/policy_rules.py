"""`policy [IMAGE [ACTION]]`: the `[[policy]]` rules, or which applies to an image and what it
requires (bot/core/rules.py), so nobody has to read the configuration to know."""

from __future__ import annotations

from datetime import timedelta

from bot.core import formatting as fmt
from bot.core.replies import Reply, Table
from bot.core.rules import DEFAULT, PolicyRule, Terms
from bot.kernel.context import Call, Context
from handlers.requests import rules_gate


def policy(call: Call, *, ctx: Context) -> Reply:
    """List the rules; with an image, the terms a deletion of it would be made under."""
    ref = call.args.get("image")
    if ref is None:
        return _list(ctx)
    registry = ctx.registries.for_image(ref, call.args.get("registry")).name
    action = call.args.get("action") or "delete"
    found = rules_gate.terms(ctx, registry=registry, repositories=(ref.repository,), action=action)
    return Reply(
        text=f"{registry}/{ref.repository}, {action}: rule {found.rule}.",
        fields=_fields(ctx, found, action),
        data={
            "registry": registry,
            "repository": ref.repository,
            "action": action,
            **_terms_data(found),
        },
    )


def _fields(ctx: Context, found: Terms, action: str) -> tuple[tuple[str, str], ...]:
    fields = [("rule", found.rule), ("approvals", str(found.required))]
    for rule, ids in found.approvers:
        fields.append(("approvers", f"one from {' or '.join(ids)} (rule {rule})"))
    fields.append(
        ("reason", f"at least {found.reason_min} characters" if found.reason_min else "any")
    )
    fields.append(("expires", f"{_duration(found.ttl)} after the request"))
    frozen = found.frozen_until(ctx.clock())
    if found.freeze:
        windows = "; ".join(f"{f} (rule {r})" for r, f in found.freeze)
        fields.append(
            (
                "freeze",
                windows + (f"; now frozen until {fmt.when(frozen[1])}" if frozen else "; not now"),
            )
        )
    if action == "purge" and found.max_purge is not None:
        fields.append(("max purge", f"{found.max_purge:,} items; one more approval beyond"))
    fields.append(
        (
            "break-glass",
            f"allowed (oncall or owner; {found.break_glass_per_day} a day each; reviewed within "
            f"{_duration(found.review_within)})"
            if found.break_glass
            else "not allowed",
        )
    )
    if found.confirm:
        fields.append(("confirm", "approvers type the repository name"))
    return tuple(fields)


def _terms_data(found: Terms) -> dict:
    return {
        "rules": list(found.rules),
        "required": found.required,
        "approvers": [{"rule": r, "ids": list(ids)} for r, ids in found.approvers],
        "reason_min": found.reason_min,
        "ttl_seconds": found.ttl.total_seconds(),
        "freeze": [
            {"rule": r, "cron": f.cron, "seconds": f.duration.total_seconds()}
            for r, f in found.freeze
        ],
        "max_purge": found.max_purge,
        "break_glass": found.break_glass,
        "confirm": found.confirm,
    }


def _list(ctx: Context) -> Reply:
    approvals = ctx.config.approvals
    rows = [_row(rule) for rule in ctx.config.rules]
    rows.append(
        (
            DEFAULT,
            "*",
            "(every other repository)",
            "/".join(str(approvals.required[a]) for a in ("delete", "delete_manifest", "purge")),
            "-",
            "-",
            _duration(approvals.ttl),
            "-",
            "no",
            "-",
        )
    )
    n = len(ctx.config.rules)
    return Reply(
        text=f"{n} rule{'' if n == 1 else 's'}, first match wins; [approvals] for the rest:"
        if n
        else "No [[policy]] rules: [approvals] applies to every repository:",
        table=Table(
            (
                "rule",
                "registry",
                "repos",
                "approvals d/m/p",
                "approvers",
                "reason",
                "ttl",
                "freeze",
                "break-glass",
                "confirm",
            ),
            tuple(rows),
        ),
        data=[
            {"name": r.name, "registry": r.registry, "repos": list(r.repos)}
            for r in ctx.config.rules
        ],
    )


def _row(rule: PolicyRule) -> tuple[str, ...]:
    counts = "/".join(
        str(rule.required_for(a, {"delete": 0, "delete_manifest": 0, "purge": 0}) or "-")
        for a in ("delete", "delete_manifest", "purge")
    )
    return (
        rule.name,
        rule.registry or "*",
        ", ".join(rule.repos),
        counts if rule.approvals else "[approvals]",
        ", ".join(rule.approvers) or "-",
        f"{rule.reason_min}+" if rule.reason_min else "-",
        _duration(rule.ttl) if rule.ttl else "[approvals]",
        "; ".join(str(f) for f in rule.freeze) or "-",
        f"yes ({rule.break_glass_per_day}/day)" if rule.break_glass else "no",
        "type" if rule.confirm else "-",
    )


def _duration(delta: timedelta) -> str:
    """`4h`, `1d12h`, `30m`: as the configuration writes durations."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    text = (f"{days}d" if days else "") + (f"{hours}h" if hours else "")
    return text + (f"{minutes}m" if minutes else "") or f"{seconds}s"
