"""`lock`, `unlock`: keep an image from being deleted or overwritten, as ACR's tag and
manifest locks do (`deleteEnabled`/`writeEnabled`). `delete` and `purge` skip locked items."""

from __future__ import annotations

from bot.core.errors import UsageError
from bot.core.replies import Reply
from bot.kernel.context import Call, Context
from handlers import deployed


def _set(call: Call, ctx: Context, *, locked: bool) -> Reply:
    registry, ref = call.registry, call.args["image"]
    assert registry is not None
    both = not call.args["delete"] and not call.args["write"]
    delete = locked if (both or call.args["delete"]) else None
    write = locked if (both or call.args["write"]) else None
    reference = ref.digest or ref.tag
    registry.set_lock(ref.repository, reference, delete=delete, write=write)
    kinds = " and ".join(
        k for k, v in (("deletion", delete), ("overwrite", write)) if v is not None
    )
    what = f"{ref.repository}@{ref.digest}" if ref.digest and not ref.tag else str(ref)
    verb = "Locked" if locked else "Unlocked"
    return Reply(
        text=f"{verb} {registry.name}/{what} {'against' if locked else 'for'} {kinds}.",
        data={
            "registry": registry.name,
            "repository": ref.repository,
            "reference": reference,
            "delete_locked": delete,
            "write_locked": write,
        },
    )


def lock(call: Call, *, ctx: Context) -> Reply:
    """Lock a tag (or, by digest, a manifest) against deletion and/or overwrite."""
    if call.args.get("deployed"):
        return deployed.lock_deployed(call, ctx=ctx)
    if call.args.get("image") is None:
        raise UsageError("`lock` needs an IMAGE, or --deployed to lock every digest in use")
    return _set(call, ctx, locked=True)


def unlock(call: Call, *, ctx: Context) -> Reply:
    """Take a lock off again."""
    return _set(call, ctx, locked=False)
