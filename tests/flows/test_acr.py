"""The `acr` backend through the real Azure SDK clients, against local HTTPS wire fakes."""

import pytest

from bot.core.errors import NotFound, RegistryError
from bot.core.registry import Registry

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


@pytest.fixture
def seeded(fake_acr):
    fake_acr.push("library/hello-world", "latest", D1, offset=100)
    fake_acr.push("library/hello-world", "v1", D1, offset=50)
    fake_acr.push("library/hello-world", "v0", D2, offset=0)
    for i in range(5):
        fake_acr.push(f"team/app{i}", "1.0", D2)
    return fake_acr


def test_is_a_registry(acr):
    assert isinstance(acr, Registry)


def test_lists_repositories_across_pages_after_the_token_exchange(acr, seeded):
    names = acr.repositories()
    assert names == ["library/hello-world", *(f"team/app{i}" for i in range(5))]
    paths = [p for _, p in seeded.state.calls]
    assert any(p.startswith("/oauth2/exchange") for p in paths)
    assert any(p.startswith("/oauth2/token") for p in paths)


def test_tags_carry_dates_and_locks(acr, seeded):
    seeded.state.repositories["library/hello-world"]["v0"].delete_enabled = False
    tags = {t.name: t for t in acr.all_tags("library/hello-world")}
    assert set(tags) == {"latest", "v1", "v0"}
    assert tags["latest"].digest == D1
    assert tags["latest"].created.year == 2023
    assert tags["v0"].locked and not tags["v1"].locked


def test_image_lists_tags_sharing_the_digest(acr, seeded):
    info = acr.image("library/hello-world", "latest")
    assert (info.digest, info.size) == (D1, 5325)
    assert [t.name for t in acr.tags_on("library/hello-world", D1)] == ["latest", "v1"]


def test_untag_removes_one_tag(acr, seeded):
    acr.untag("library/hello-world", "latest")
    assert [t.name for t in acr.all_tags("library/hello-world")] == ["v0", "v1"]


def test_untag_of_a_missing_tag_is_reported_not_silent(acr, seeded):
    with pytest.raises(NotFound, match=r"^prod: library/hello-world has no tag `nope`$"):
        acr.untag("library/hello-world", "nope")


def test_delete_manifest_removes_every_tag_on_it(acr, seeded):
    acr.delete_manifest("library/hello-world", D1)
    assert [t.name for t in acr.all_tags("library/hello-world")] == ["v0"]


def test_locks_are_set_through_tag_properties(acr, seeded):
    acr.set_lock("library/hello-world", "v1", delete=True, write=True)
    digest = acr.resolve("library/hello-world", "v1")
    assert [t.name for t in acr.tags_on("library/hello-world", digest) if t.locked] == ["v1"]
    assert acr.tag_locked("library/hello-world", "v1") is True


def test_admin_user_status_disable_and_enable_with_the_long_running_operation(acr, seeded):
    assert acr.admin_status().enabled is True
    assert acr.set_admin(enabled=False).enabled is False
    assert seeded.state.admin_enabled is False
    paths = [p for _, p in seeded.state.calls]
    assert any("/operationStatuses/" in p for p in paths)
    assert acr.set_admin(enabled=True).enabled is True


def test_regenerate_changes_only_that_password(acr, seeded):
    before = dict(seeded.state.passwords)
    new = acr.regenerate_password("password2")
    assert new.value == seeded.state.passwords["password2"] != before["password2"]
    assert seeded.state.passwords["password"] == before["password"]
    assert new.username == "testreg"
    assert new.value not in repr(new)


def test_throttling_and_server_errors_become_messages(acr, seeded):
    seeded.state.throttle = 1
    with pytest.raises(RegistryError, match=r"^prod is throttling requests \(429\)"):
        acr.all_tags("library/hello-world")
    seeded.state.fail_status = 503
    with pytest.raises(RegistryError, match=r"^prod failed \(HTTP 503\); try again later$"):
        acr.repositories()


def test_unreachable_registry(fake_acr, tmp_path):
    from handlers.registries.acr import AcrRegistry
    from tests.support.fake_acr import StaticCredential
    from tests.support.helpers import free_port

    port = free_port()
    dead = AcrRegistry(
        "gone",
        login_server=f"127.0.0.1:{port}",
        subscription_id="s",
        resource_group="r",
        registry_name="n",
        credential=StaticCredential(),
        arm_endpoint=f"https://127.0.0.1:{port}",
        audience="https://x",
        connection_verify=fake_acr.ca_path,
        retry_total=0,
    )
    with pytest.raises(RegistryError, match=r"^gone \(127\.0\.0\.1:\d+\) is unreachable"):
        dead.repositories()


def test_plain_http_is_refused():
    from handlers.registries.acr import AcrRegistry

    with pytest.raises(ValueError, match="ACR is always https"):
        AcrRegistry(
            "x",
            login_server="http://myreg.azurecr.io",
            subscription_id="s",
            resource_group="r",
            registry_name="n",
            credential=None,
            arm_endpoint="https://m",
            audience="https://a",
        )


@pytest.fixture
def big(fake_acr):
    """2,500 CI tags on 50 images, one repository."""
    for i in range(2500):
        fake_acr.push("ci/app", f"build-{i}", f"sha256:{i % 50:064x}", offset=i)
    return fake_acr


def test_one_page_of_tags_costs_two_requests_whatever_the_repository_size(acr, big):
    from bot.core.registry import Order

    first = acr.list_tags("ci/app", order=Order.TIME_DESC, page_size=25)
    assert [t.name for t in first.tags[:3]] == ["build-2499", "build-2498", "build-2497"]
    assert (first.total, first.exact, first.after) == (2500, True, "build-2475")
    big.reset_counts()
    warm = acr.list_tags("ci/app", order=Order.TIME_DESC, page_size=25)
    assert warm == first
    # One listing GET (n=25, orderby=timedesc) and one repository-properties GET: sizes come
    # from the digest facts cached by the first call.
    assert big.count("GET", "/acr/v1/") == 2
    nxt = acr.list_tags("ci/app", order=Order.TIME_DESC, page_size=25, after=first.after)
    assert nxt.tags[0].name == "build-2474"
    assert big.count("GET", "/acr/v1/ci/app/_tags") == 2  # no re-listing from the start


def test_a_cold_page_reads_each_digest_once_then_never_again(acr, big):
    from bot.core.registry import Order

    big.reset_counts()
    acr.list_tags("ci/app", order=Order.NAME, page_size=100)
    manifests = big.count("GET", "/acr/v1/ci/app/_manifests/")
    assert 0 < manifests <= 50  # one per distinct digest on the page, not one per tag
    big.reset_counts()
    acr.list_tags("ci/app", order=Order.NAME, page_size=100)
    assert big.count("GET", "/acr/v1/ci/app/_manifests/") == 0


def test_filtered_listing_walks_in_big_pages_and_says_at_least(acr, big):
    from bot.core.registry import Order

    page = acr.list_tags("ci/app", order=Order.NAME, page_size=5, pattern="build-1??")
    assert [t.name for t in page.tags] == [f"build-{n}" for n in (100, 101, 102, 103, 104)]
    assert page.exact is False and page.total >= 6
    assert big.count("GET", "/acr/v1/ci/app/_tags") <= 3


def test_tags_on_a_digest_are_filtered_by_the_server(acr, big):
    big.reset_counts()
    on = acr.tags_on("ci/app", f"sha256:{7:064x}")
    assert len(on) == 50 and on[0].name == "build-7"
    assert big.count("GET", "/acr/v1/ci/app/_tags") == 1


def test_a_locked_delete_refused_by_acr_says_locked(acr, big):
    from bot.core.errors import Conflict

    big.set_attributes("ci/app", "build-1", delete_enabled=False)
    with pytest.raises(Conflict, match="locked"):
        acr.delete_manifest("ci/app", f"sha256:{1:064x}")
