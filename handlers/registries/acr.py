"""The `acr` backend: Azure Container Registry through the Azure SDKs.

Data plane with azure-containerregistry (repositories, tag properties with dates and locks,
untag, manifest delete); management plane with azure-mgmt-containerregistry (admin user,
credentials). Both clients are built once, with azure.identity.DefaultAzureCredential in
production, and shared. SDK errors are translated into our user errors right here, where the
SDK is called.

Quirks handled: `delete_tag` returns silently on a 404, so its response is read through the
SDK's `cls` hook and a missing tag reported as such; ACR is always https (a login server with a
scheme is refused). At ACR's limits: tokens are reused until they near expiry (acr_tokens.py,
a workaround for the SDK's auth flow), reads are paced to the registry's tier (acr_pace.py),
and `limits()` reads the SKU from ARM once for the pace of a purge's DELETEs.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from fnmatch import fnmatchcase
from typing import Any, TypeVar

from azure.containerregistry import ContainerRegistryClient
from azure.containerregistry._exchange_client import ACRExchangeClient
from azure.core.exceptions import (
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import (
    RegenerateCredentialParameters,
    RegistryUpdateParameters,
)

from bot.core.errors import (
    Conflict,
    LayersGone,
    NotFound,
    OutcomeUnknown,
    RegistryError,
    Unsupported,
    UserError,
)
from bot.core.redaction import REDACTOR
from bot.core.references import DIGEST_RE
from bot.core.registry import (
    READING_MANIFESTS,
    AdminStatus,
    Contents,
    ImageInfo,
    Limits,
    ManifestBytes,
    ManifestInfo,
    NewPassword,
    Order,
    Progress,
    Quota,
    TagInfo,
    TagPage,
    held_blobs,
    natural_key,
    no_progress,
)
from bot.state.facts import DigestFacts, FactCache, MemoryFacts
from handlers.registries.acr_pace import ReadPace, ReadPacePolicy
from handlers.registries.acr_tokens import TokenCache, TokenPolicies

T = TypeVar("T")
# ACR's documented operations a minute by SKU (ReadOps, WriteOps), from the service tiers page
# (learn.microsoft.com/azure/container-registry/container-registry-skus), older edition.
TIERS = {"Basic": (1_000, 100), "Standard": (3_000, 500), "Premium": (10_000, 2_000)}
LOWEST = Limits("Basic", *TIERS["Basic"], known=False, why_unknown="not read yet")
RETRY_SKU_AFTER = 300.0  # seconds before a SKU that could not be read is asked for again

log = logging.getLogger(__name__)
VAULT_ATTEMPTS = 3  # set_secret tries after a regeneration, before the password is shown
LIST_PAGE = 1000  # tags or repositories a listing request asks for when it walks them all
ORDER_BY = {Order.TIME_DESC: "timedesc", Order.TIME_ASC: "timeasc", Order.NAME: None}
# What the SDK may retry after a timeout: reads only. A DELETE or PATCH that timed out may
# have happened; retrying it blindly turns "done" into a confusing 404.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})

# cloud -> (ARM endpoint, AAD authority host, ACR token audience)
CLOUDS = {
    "public": (
        "https://management.azure.com",
        "https://login.microsoftonline.com",
        "https://management.azure.com",
    ),
    "china": (
        "https://management.chinacloudapi.cn",
        "https://login.chinacloudapi.cn",
        "https://management.chinacloudapi.cn",
    ),
    "usgov": (
        "https://management.usgovcloudapi.net",
        "https://login.microsoftonline.us",
        "https://management.usgovcloudapi.net",
    ),
}


class AcrRegistry:
    """One Azure Container Registry: its data plane and its ARM resource."""

    kind = "acr"
    can_untag = True
    has_dates = True
    can_list_manifests = True
    can_lock = True
    write_grace = 125.0  # azure-core's default read timeout is 60 s
    has_admin = True  # the admin user and its two passwords (admin, rotate)

    def __init__(
        self,
        name: str,
        *,
        login_server: str,
        subscription_id: str,
        resource_group: str,
        registry_name: str,
        credential: Any,
        arm_endpoint: str,
        audience: str,
        connection_verify: str | bool = True,
        key_vault: Any = None,
        key_vault_secret: str | None = None,
        vault_backoff: float = 1.0,
        facts: FactCache | None = None,
        read_rate: float | None = None,
        reuse_tokens: bool = True,
        **client_options: Any,
    ) -> None:
        if "://" in login_server:
            raise ValueError("login_server is a host name: ACR is always https")
        self.name = name
        self.login_server = login_server.lower()
        self._rg, self._registry_name = resource_group, registry_name
        options = {"connection_verify": connection_verify, **client_options}
        endpoint = f"https://{self.login_server}"
        self._limits: Limits | None = None
        self._limits_at = 0.0
        self._limits_lock = threading.Lock()
        self.reads = ReadPace(read_rate, lowest=LOWEST, limits=self.limits)
        # Tokens reused until they near expiry (see acr_tokens: a workaround for the SDK).
        self.tokens = TokenCache(
            ACRExchangeClient(
                endpoint, credential, credential_scopes=[f"{audience}/.default"], **options
            )
        )
        self._data = ContainerRegistryClient(
            endpoint,
            credential,
            audience=audience,
            per_retry_policies=TokenPolicies(self.tokens, ReadPacePolicy(self.reads))
            if reuse_tokens
            else [ReadPacePolicy(self.reads)],  # the SDK's own flow (bench/acr_budget.py)
            **options,
        )
        self._arm = ContainerRegistryManagementClient(
            credential,
            subscription_id,
            base_url=arm_endpoint,
            credential_scopes=[f"{arm_endpoint.rstrip('/')}/.default"],
            **options,
        )
        self._vault, self._vault_secret = key_vault, key_vault_secret
        self._vault_backoff = vault_backoff
        self._facts = facts if facts is not None else MemoryFacts()

    # -- reading ---------------------------------------------------------------------------

    def repositories(self) -> list[str]:
        return sorted(
            self._call(
                lambda: list(self._data.list_repository_names(results_per_page=LIST_PAGE)),
                what="the repository list",
            )
        )

    def list_tags(
        self,
        repository: str,
        *,
        order: Order,
        page_size: int,
        after: str | None = None,
        pattern: str | None = None,
        digest: str | None = None,
        progress: Progress = no_progress,
    ) -> TagPage:
        """ACR sorts and pages: one listing request for the page, one for the tag count.

        ACR cannot filter tag names, so with ``pattern`` the pages are walked (1,000 tags a
        request) until this page is full; the total is then "at least" unless the walk ended.
        ACR filters by ``digest`` itself.
        """
        orderby = ORDER_BY[order]

        def pages(size: int) -> Any:
            return self._data.list_tag_properties(
                repository, order_by=orderby, results_per_page=size, last=after, digest=digest
            ).by_page()

        def listing() -> TagPage:
            if not pattern and not digest:
                walk = pages(page_size)
                first = list(next(walk, []))
                more = walk.continuation_token is not None  # the Link header: no extra request
                total = self._data.get_repository_properties(repository).tag_count
                shown = tuple(self._tag(t) for t in first)
                return TagPage(
                    tags=self._sized(repository, shown),
                    total=total if total is not None else len(shown),
                    after=shown[-1].name if more and shown else None,
                )
            matches: list[TagInfo] = []
            exhausted = True
            for page in pages(LIST_PAGE):
                matches.extend(
                    self._tag(t)
                    for t in page
                    if (not pattern or fnmatchcase(t.name, pattern))
                    and (not digest or t.digest == digest)
                )
                if len(matches) > page_size:
                    exhausted = False
                    break
            shown = tuple(matches[:page_size])
            return TagPage(
                tags=self._sized(repository, shown),
                total=len(matches),
                exact=exhausted and after is None,  # after a cursor we only counted the rest
                after=shown[-1].name if len(matches) > page_size else None,
            )

        return self._call(listing, what=repository, missing=f"no repository `{repository}`")

    def all_tags(self, repository: str, *, progress: Progress = no_progress) -> list[TagInfo]:
        def listing() -> list[TagInfo]:
            return [
                self._tag(t)
                for t in self._data.list_tag_properties(repository, results_per_page=LIST_PAGE)
            ]

        return self._call(listing, what=repository, missing=f"no repository `{repository}`")

    def resolve(self, repository: str, tag: str) -> str:
        return self._call(
            lambda: self._data.get_tag_properties(repository, tag).digest,
            what=f"{repository}:{tag}",
            missing=f"{repository} has no tag `{tag}`",
        )

    def image(self, repository: str, reference: str) -> ImageInfo:
        digest = (
            reference if DIGEST_RE.fullmatch(reference) else self.resolve(repository, reference)
        )
        props = self._call(
            lambda: self._data.get_manifest_properties(repository, digest),
            what=f"{repository}@{digest}",
            missing=f"{repository} has no manifest {digest}",
        )
        return ImageInfo(
            repository=repository,
            digest=digest,
            media_type=None,
            size=props.size_in_bytes,
            created=props.created_on,
            updated=props.last_updated_on,
            manifest_locked=not (props.can_delete and props.can_write),
        )

    def tags_on(
        self, repository: str, digest: str, *, progress: Progress = no_progress
    ) -> tuple[TagInfo, ...]:
        """ACR filters by digest on the server: the tags with their locks, in one listing."""

        def listing() -> tuple[TagInfo, ...]:
            found = self._data.list_tag_properties(
                repository, digest=digest, results_per_page=LIST_PAGE
            )
            tags = [self._tag(t) for t in found if t.digest == digest]
            return tuple(sorted(tags, key=lambda t: natural_key(t.name)))

        return self._call(
            listing, what=f"{repository}@{digest}", missing=f"no repository `{repository}`"
        )

    def tag_locked(self, repository: str, tag: str) -> bool:
        return self.tag(repository, tag).locked

    def tag(self, repository: str, tag: str) -> TagInfo:
        """One GET of the tag's properties: its digest, dates and locks."""
        return self._tag(
            self._call(
                lambda: self._data.get_tag_properties(repository, tag),
                what=f"{repository}:{tag}",
                missing=f"{repository} has no tag `{tag}`",
            )
        )

    def _tag(self, props: Any) -> TagInfo:
        return TagInfo(
            name=props.name,
            digest=props.digest,
            created=props.created_on,
            updated=props.last_updated_on,
            locked=not (props.can_delete and props.can_write),
        )

    def _sized(self, repository: str, tags: tuple[TagInfo, ...]) -> tuple[TagInfo, ...]:
        """Sizes from the digest facts cache; a page's unknown digests are read once, then
        cached (ACR's tag listing carries no size)."""
        digests = {t.digest for t in tags}
        known = {
            d: f for d, f in self._facts.get_many(self.name, digests).items() if f.size is not None
        }
        for digest in sorted(digests - set(known)):
            props = self._data.get_manifest_properties(repository, digest)
            facts = DigestFacts(
                digest=digest,
                size=props.size_in_bytes,
                created=props.created_on,
                platforms=(f"{props.operating_system}/{props.architecture}",)
                if props.architecture
                else (),
            )
            self._facts.put(self.name, facts)
            known[digest] = facts
        return tuple(replace(t, size=known[t.digest].size) for t in tags)

    # -- writing ---------------------------------------------------------------------------

    def untag(self, repository: str, tag: str) -> None:
        """One DELETE. The SDK's delete_tag returns None on a 404 too: its `cls` hook hands
        us the response, so a missing tag is reported without reading the tag first."""
        status: list[int] = []

        def delete() -> None:
            self._data.delete_tag(
                repository,
                tag,
                retry_on_methods=READ_METHODS,
                cls=lambda response, *_: status.append(response.http_response.status_code),
            )
            if status and status[-1] == 404:
                raise ResourceNotFoundError("TAG_UNKNOWN")

        self._call(
            delete,
            what=f"{repository}:{tag}",
            missing=f"{repository} has no tag `{tag}`",
            write="DELETE",
        )

    def delete_manifest(self, repository: str, digest: str) -> None:
        self._call(
            lambda: self._data.delete_manifest(repository, digest, retry_on_methods=READ_METHODS),
            what=f"{repository}@{digest}",
            missing=f"{repository} has no manifest {digest}",
            write="DELETE",
        )

    def manifest_bytes(self, repository: str, digest: str) -> ManifestBytes:
        """The manifest as stored. The SDK's get_manifest checks the digest but hands back
        only the parsed JSON; its raw_response_hook (an azure-core pipeline option) gives us
        the exact bytes, which are checked against the digest again here."""
        seen: list[tuple[bytes, str]] = []

        def keep(response: Any) -> None:
            http = response.http_response
            seen.append((http.body(), http.headers.get("Content-Type", "")))

        what = f"the manifest {repository}@{digest}"
        try:
            self._call(
                lambda: self._data.get_manifest(repository, digest, raw_response_hook=keep),
                what=what,
                missing=f"{repository} has no manifest {digest}",
            )
        except ValueError as exc:  # DigestValidationError, not JSON, over 4 MB
            raise self._malformed(what, str(exc).strip().splitlines()[0]) from None
        data, header = seen[-1]
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise self._malformed(what, "its content is not the digest asked for")
        try:
            body = json.loads(data)
        except ValueError:
            raise self._malformed(what, "not JSON") from None
        media_type = (body.get("mediaType") if isinstance(body, dict) else None) or header
        return ManifestBytes(digest=digest, media_type=media_type.split(";")[0], data=data)

    def put_manifest(self, repository: str, reference: str, manifest: ManifestBytes) -> str:
        """PUT the exact bytes (set_manifest with a stream) by digest, or under a tag."""
        tag = None if DIGEST_RE.fullmatch(reference) else reference
        try:
            return self._call(
                lambda: self._data.set_manifest(
                    repository,
                    io.BytesIO(manifest.data),
                    tag=tag,
                    media_type=manifest.media_type,
                ),
                what=f"{repository}:{tag}" if tag else f"{repository}@{manifest.digest}",
                missing=f"{repository} has no manifest {manifest.digest}",
                write="PUT",
            )
        except ValueError as exc:  # DigestValidationError: it stored other bytes
            raise RegistryError(f"{self.name}: {exc}") from None

    def restore_deleted(self, repository: str, digest: str, *, tag: str | None) -> bool:
        """POST /acr/v1/_deleted/{repo}/_manifests/{digest} {"tag": …} (ACR soft delete; the
        shape `az acr manifest restore` sends). azure-containerregistry 1.2 has no soft-delete
        API: the request goes through its generated client's send_request, which carries the
        same pipeline (auth, retries, pacing). 404: no deleted copy (soft delete off, or
        purged after its retention): False, and the caller puts the snapshot back."""
        from azure.core.rest import HttpRequest

        request = HttpRequest(
            "POST",
            f"/acr/v1/_deleted/{repository}/_manifests/{digest}",
            params={"force": "false"},
            json={"tag": tag} if tag else {},
        )
        what = f"the deleted manifest {repository}@{digest}"

        def send() -> bool:
            response = self._data._client.send_request(request)  # the SDK has no soft-delete API
            if response.status_code == 404:
                return False
            response.raise_for_status()
            return True

        return self._call(send, what=what, write="POST")

    def set_lock(
        self, repository: str, reference: str, *, delete: bool | None, write: bool | None
    ) -> None:
        """A tag's or (for a digest) a manifest's deleteEnabled/writeEnabled."""
        attributes = {
            key: not value
            for key, value in (("can_delete", delete), ("can_write", write))
            if value is not None
        }
        if DIGEST_RE.fullmatch(reference):
            self._call(
                lambda: self._data.update_manifest_properties(
                    repository, reference, retry_on_methods=READ_METHODS, **attributes
                ),
                what=f"{repository}@{reference}",
                missing=f"{repository} has no manifest {reference}",
                write="PATCH",
            )
            return
        self._call(
            lambda: self._data.update_tag_properties(
                repository, reference, retry_on_methods=READ_METHODS, **attributes
            ),
            what=f"{repository}:{reference}",
            missing=f"{repository} has no tag `{reference}`",
            write="PATCH",
        )

    def manifests(self, repository: str) -> list[ManifestInfo]:
        """Every manifest with its tags. ACR's listing carries no media type: a manifest
        without an architecture may be an index, and is read (`get_manifest`) for the
        manifests it references and a referrer's subject; so is every untagged one."""

        def listing() -> list[ManifestInfo]:
            found = []
            for props in self._data.list_manifest_properties(
                repository, results_per_page=LIST_PAGE
            ):
                info = ManifestInfo(
                    digest=props.digest,
                    tags=tuple(sorted(props.tags or [], key=natural_key)),
                    when=props.last_updated_on or props.created_on,
                    locked=not (props.can_delete and props.can_write),
                )
                if not info.tags or not props.architecture:
                    info = self._with_body(repository, info)
                found.append(info)
            return found

        return self._call(listing, what=repository, missing=f"no repository `{repository}`")

    def references(self, repository: str, digests: list[str]) -> dict[str, tuple[str, ...]]:
        found = {}
        for digest in set(digests):
            info = self._call(
                lambda d=digest: self._with_body(repository, ManifestInfo(digest=d)),
                what=f"{repository}@{digest}",
            )
            if info.references:
                found[digest] = info.references
        return found

    def contents(
        self, repository: str, digests: list[str], *, progress: Progress = no_progress
    ) -> dict[str, Contents]:
        """From the facts cache, else one `get_manifest` each (the SDK checks the body against
        its digest), cached. The manifest's own size is that of its canonical JSON: the SDK
        hands back the parsed body; manifests are a few KB against layers of MB."""
        known = {
            d: f for d, f in self._facts.get_many(self.name, digests).items() if f.blobs is not None
        }
        missing = sorted(set(digests) - set(known))
        for done, digest in enumerate(missing, 1):
            facts = self._call(
                lambda d=digest: self._read_contents(repository, d),
                what=f"{repository}@{digest}",
            )
            if facts is not None:
                self._facts.put(self.name, facts)
                known[digest] = facts
            progress(done, len(missing), READING_MANIFESTS)
        return {
            d: Contents(digest=d, blobs=f.blobs or (), references=f.references)
            for d, f in known.items()
        }

    def _read_contents(self, repository: str, digest: str) -> DigestFacts | None:
        what = f"the manifest {repository}@{digest}"
        try:
            result = self._data.get_manifest(repository, digest)
        except ResourceNotFoundError:
            return None  # gone since it was listed
        except ValueError as exc:  # DigestValidationError, JSONDecodeError, too large
            raise self._malformed(what, str(exc).strip().splitlines()[0]) from None
        body = result.manifest
        if not isinstance(body, dict):
            raise self._malformed(what, "not a JSON object")
        entries = body.get("manifests")
        references = tuple(
            m["digest"]
            for m in entries or []
            if isinstance(m, dict)
            and isinstance(m.get("digest"), str)
            and DIGEST_RE.fullmatch(m["digest"])
        )
        if entries is not None and (
            not isinstance(entries, list) or len(references) != len(entries)
        ):
            raise self._malformed(what, "its `manifests` is not a list of descriptors")
        parts = [] if entries is not None else [body.get("config"), *(body.get("layers") or [])]
        own = len(json.dumps(body, separators=(",", ":")).encode())
        blobs = ((digest, own), *held_blobs(parts))
        return DigestFacts(
            digest=digest,
            media_type=result.media_type or body.get("mediaType"),
            references=references,
            blobs=blobs,
        )

    def referrers(self, repository: str, digest: str) -> tuple[str, ...]:
        return tuple(m.digest for m in self.manifests(repository) if m.subject == digest)

    def _with_body(self, repository: str, info: ManifestInfo) -> ManifestInfo:
        """The manifest's media type, the manifests it references and its subject, from its
        body. The SDK checks the body against the digest (DigestValidationError) and refuses
        one over 4 MB (ValueError); those, a body that is not JSON or an index whose
        `manifests` is not a list of descriptors are a RegistryError naming the registry,
        never an index without children (deletions read this). A manifest gone since it was
        listed (404) has nothing to tell."""
        what = f"the manifest {repository}@{info.digest}"
        try:
            result = self._data.get_manifest(repository, info.digest)
        except ResourceNotFoundError:
            return info
        except ValueError as exc:  # DigestValidationError, JSONDecodeError, too large
            raise self._malformed(what, str(exc).strip().splitlines()[0]) from None
        body = result.manifest
        if not isinstance(body, dict):
            raise self._malformed(what, "not a JSON object")
        entries = body.get("manifests")
        if entries is not None and not (
            isinstance(entries, list)
            and all(
                isinstance(m, dict)
                and isinstance(m.get("digest"), str)
                and DIGEST_RE.fullmatch(m["digest"])
                for m in entries
            )
        ):
            raise self._malformed(what, "its `manifests` is not a list of descriptors")
        subject = body.get("subject") if isinstance(body.get("subject"), dict) else None
        return replace(
            info,
            media_type=result.media_type or body.get("mediaType"),
            references=tuple(m["digest"] for m in entries or []),
            subject=subject.get("digest") if subject else None,
        )

    # -- limits ----------------------------------------------------------------------------

    def limits(self) -> Limits:
        """The SKU's documented limits, read from ARM once. If it cannot be read (no Reader
        role on the resource, ARM down), the lowest tier's, saying why, asked again later."""
        with self._limits_lock:
            if self._limits is None or (
                not self._limits.known and time.monotonic() - self._limits_at > RETRY_SKU_AFTER
            ):
                self._limits, self._limits_at = self._read_limits(), time.monotonic()
            return self._limits

    def storage_quota(self) -> Quota | None:
        """The SKU's included storage and what the registry uses, from ARM's listUsages
        (`Size`, in bytes); None when ARM cannot be read (no Reader role on the resource):
        `report` says so rather than guess a plan."""
        try:
            result = self._call(
                lambda: self._arm.registries.list_usages(self._rg, self._registry_name),
                what="the registry's usage (listUsages)",
                missing="no such registry resource",
            )
        except UserError as exc:
            log.warning("%s: listUsages not read: %s", self.name, exc)
            return None
        for usage in result.value or []:
            if usage.name == "Size" and usage.limit is not None:
                return Quota(used=usage.current_value or 0, included=usage.limit)
        return None

    def _read_limits(self) -> Limits:
        try:
            registry = self._call(
                lambda: self._arm.registries.get(self._rg, self._registry_name),
                what="the registry resource (its SKU)",
                missing="no such registry resource",
            )
        except UserError as exc:
            return replace(LOWEST, why_unknown=str(exc))
        return self._tier_of(registry)

    def _tier_of(self, registry: Any) -> Limits:
        sku = getattr(registry.sku, "name", None)
        tier = str(getattr(sku, "value", sku) or "")
        if tier not in TIERS:
            return replace(LOWEST, why_unknown=f"{self.name} has an unknown SKU {tier!r}")
        return Limits(tier, *TIERS[tier])

    def _malformed(self, what: str, reason: str) -> RegistryError:
        return RegistryError(
            f"{self.name} sent a malformed answer for {what}: {reason}; nothing was read from "
            "it. Try again, or ask the registry's operators to check it"
        )

    # -- admin user and credentials --------------------------------------------------------

    def admin_status(self) -> AdminStatus:
        registry = self._call(
            lambda: self._arm.registries.get(self._rg, self._registry_name),
            what="the registry resource",
            missing="no such registry resource",
        )
        with self._limits_lock:  # the same read says the SKU: keep it
            if self._limits is None or not self._limits.known:
                self._limits, self._limits_at = self._tier_of(registry), time.monotonic()
        return AdminStatus(enabled=bool(registry.admin_user_enabled), username=self._registry_name)

    def set_admin(self, *, enabled: bool) -> AdminStatus:
        def update() -> Any:
            poller = self._arm.registries.begin_update(
                self._rg, self._registry_name, RegistryUpdateParameters(admin_user_enabled=enabled)
            )
            return poller.result()

        registry = self._call(
            update, what="the registry resource", missing="no such registry resource"
        )
        return AdminStatus(enabled=bool(registry.admin_user_enabled), username=self._registry_name)

    def regenerate_password(self, which: str) -> NewPassword:
        result = self._call(
            lambda: self._arm.registries.regenerate_credential(
                self._rg, self._registry_name, RegenerateCredentialParameters(name=which)
            ),
            what="the admin credentials",
            missing="no such registry resource",
        )
        value = next((p.value for p in result.passwords or [] if p.name == which), None)
        if not value:
            raise RegistryError(f"{self.name} did not return the new {which}")
        REDACTOR.add(value)  # before anything (the vault call, an SDK's log) can print it
        username = result.username or self._registry_name
        if self._vault is not None and self._vault_secret:
            stored, failure = self._store_in_vault(value)
            if stored is not None:
                return NewPassword(
                    name=which,
                    username=username,
                    value="",
                    vault_secret=f"{stored.name} (version {stored.properties.version})",
                )
            # The registry already has the new password and the old one is gone: losing it
            # now would lock every consumer out. The requester gets it, once, as without a
            # vault, with what went wrong.
            return NewPassword(name=which, username=username, value=value, vault_error=failure)
        return NewPassword(name=which, username=username, value=value)

    def _store_in_vault(self, value: str) -> tuple[Any, str | None]:
        """`set_secret`, tried VAULT_ATTEMPTS times (a PUT of the same value: safe to repeat;
        the SDK's own policy already retries each transient failure). Returns the stored
        secret, or None and the reason of the last failure."""
        reason = "no attempt"
        for attempt in range(1, VAULT_ATTEMPTS + 1):
            try:
                stored = self._call(
                    lambda: self._vault.set_secret(self._vault_secret, value),
                    what="the Key Vault secret",
                    missing="no such Key Vault",
                )
                return stored, None
            except RegistryError as exc:  # NotFound, OutcomeUnknown are RegistryErrors too
                reason = str(exc)
            except Exception as exc:  # whatever it was, the password must not be lost
                reason = f"{exc.__class__.__name__} from Key Vault"
                log.exception("storing the new password of %s in Key Vault failed", self.name)
            if attempt < VAULT_ATTEMPTS:
                time.sleep(self._vault_backoff * 2 ** (attempt - 1))
        return None, reason

    def check_list_credentials(self) -> None:
        """Whether the identity may read the admin credentials, as `rotate` needs (`acrbot
        doctor`); the values Azure returns are dropped unread."""
        self._call(
            lambda: self._arm.registries.list_credentials(self._rg, self._registry_name),
            what="the admin credentials (listCredentials)",
            missing="no such registry resource",
        )

    # -- errors ----------------------------------------------------------------------------

    def _call(
        self, fn: Callable[[], T], *, what: str, missing: str = "", write: str | None = None
    ) -> T:
        """Run one SDK call; turn azure.core errors into messages naming the registry.

        ``write`` names the method of a non-idempotent call: the SDK does not retry it after
        a timeout (``retry_on_methods`` leaves it out), and an unanswered one raises
        OutcomeUnknown, so the caller reads the registry instead of guessing.
        """
        try:
            return fn()
        except ServiceResponseError as exc:
            if write is None:
                raise RegistryError(
                    f"{self.name} ({self.login_server}) did not answer "
                    f"({exc.__class__.__name__}); try again"
                ) from None
            raise OutcomeUnknown(
                f"{self.name} did not answer the {write} of {what}; it may or may not have happened"
            ) from None
        except ResourceNotFoundError as exc:
            if _blobs_unknown(exc):  # a PUT whose layers ACR reclaimed: not "not found"
                raise _translate(self.name, exc, what) from None
            raise NotFound(f"{self.name}: {missing or what + ' not found'}") from None
        except DecodeError as exc:  # a reply the SDK could not deserialize
            raise self._malformed(what, f"not valid JSON ({exc.__class__.__name__})") from None
        except ClientAuthenticationError:
            raise RegistryError(
                f"{self.name} rejected the bot's Azure credentials (401) for {what}; check the "
                "identity DefaultAzureCredential uses (AZURE_CLIENT_ID…, managed identity, "
                "az login)"
            ) from None
        except ServiceRequestError as exc:
            raise RegistryError(
                f"{self.name} ({self.login_server}) is unreachable "
                f"({exc.__class__.__name__}); check the network path and DNS"
            ) from None
        except HttpResponseError as exc:
            raise _translate(self.name, exc, what) from None


def _body(exc: HttpResponseError) -> str:
    try:
        return exc.response.text() if exc.response is not None else ""
    except Exception:  # a body that cannot be read is no reason to lose the real error
        return ""


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After header in seconds: a number, or an HTTP date (RFC 9110)."""
    if not retry_after:
        return None
    try:
        return max(float(retry_after), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(retry_after)
    except (TypeError, ValueError):
        return None
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def _blobs_unknown(exc: HttpResponseError) -> bool:
    """ACR's (distribution's) answer to a manifest PUT whose blobs it no longer has."""
    code = getattr(exc.error, "code", None) if exc.error else None
    return code in ("MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN") or "MANIFEST_BLOB_UNKNOWN" in _body(
        exc
    )


def _translate(name: str, exc: HttpResponseError, what: str) -> Exception:
    status = exc.status_code or 0
    code = getattr(exc.error, "code", None) if exc.error else None
    if _blobs_unknown(exc):
        return LayersGone(
            f"{name} no longer has the layers of {what} (MANIFEST_BLOB_UNKNOWN: the registry "
            "reclaimed their storage since the deletion)",
            status=status,
        )
    if status == 403:
        return RegistryError(
            f"{name} denied the bot access to {what} (403); give its identity "
            "the AcrPull/AcrDelete (data) or Contributor (admin) role"
        )
    if status == 429:
        header = exc.response.headers.get("Retry-After") if exc.response is not None else None
        seconds = _seconds(header)
        return RegistryError(
            f"{name} is throttling requests (429); try again in "
            f"{'a few' if seconds is None else f'{seconds:g}'} s",
            status=429,
            retry_after=seconds,
        )
    if status == 405 and "REGISTRY_DISALLOWED_OPERATION" in _body(exc):
        # ACR's answer to deleting a locked tag or manifest (deleteEnabled/writeEnabled off).
        return Conflict(f"{name}: {what} is locked (deleteEnabled/writeEnabled is off)")
    if status == 405 or code == "UNSUPPORTED":
        return Unsupported(f"deletion is disabled on {name}")
    if code == "AdminUserDisabled":
        return RegistryError(
            f"admin user is disabled on {name}; an owner can run `admin enable --registry {name}`"
        )
    if status >= 500:
        return RegistryError(f"{name} failed (HTTP {status}); try again later", status=status)
    return RegistryError(
        f"{name} refused {what} (HTTP {status}" + (f", {code}" if code else "") + ")"
    )
