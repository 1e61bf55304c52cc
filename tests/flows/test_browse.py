"""Lookups: repos, tags and show, as carol (reader) sees them."""


def test_tags_newest_first_by_default(bot):
    reply = bot.say("carol", "tags baseimages/alpine")
    assert reply.text == "3 tags in demo/baseimages/alpine"
    assert [row[0] for row in reply.table.rows] == ["latest", "3.20", "3.19"]
    assert reply.table.rows[0][3] == "2024-05-22 00:00 UTC"


def test_tags_order_by_name_and_oldest_first(bot):
    def order(option):
        return [r[0] for r in bot.say("carol", f"tags baseimages/alpine {option}").table.rows]

    assert order("--orderby name") == ["3.19", "3.20", "latest"]
    assert order("--orderby time_asc") == ["3.19", "3.20", "latest"]


def test_cut_lists_say_so_and_page_with_a_cursor(bot):
    reply = bot.say("carol", "tags baseimages/alpine --top 1")
    assert len(reply.table.rows) == 1
    assert reply.notes == ("Showing the first 1 of 3 tags.",)
    assert reply.paging.command_after(reply.paging.next_after) == (
        "tags baseimages/alpine --top 1 --after latest"
    )
    second = bot.say("carol", "tags baseimages/alpine --top 1 --after latest")
    assert [r[0] for r in second.table.rows] == ["3.20"]
    assert second.notes == ("Showing 1 tags after `latest` (3 in all).",)
    last = bot.say("carol", "tags baseimages/alpine --top 1 --after 3.20")
    assert [r[0] for r in last.table.rows] == ["3.19"]
    assert last.paging.next_after is None
    assert "Next page: `tags baseimages/alpine --top 1 --after latest`" in bot.text(
        "carol", "tags baseimages/alpine --top 1"
    )
    assert bot.say("carol", "repos --top 2").notes == ("Showing the first 2 of 6 repositories.",)
    assert bot.say("carol", "repos --top 2 --after baseimages/fedora").data["repositories"] == [
        "testimages/nginx",
        "testimages/wordpress",
    ]


def test_tags_filter_and_digest(bot):
    reply = bot.say("carol", "tags baseimages/alpine --filter '3.*'")
    assert reply.text == "2 tags matching `3.*` in demo/baseimages/alpine"
    digest = bot.registry.resolve("baseimages/alpine", "latest")
    on = bot.say("carol", f"tags baseimages/alpine --digest {digest} --orderby name")
    assert [r[0] for r in on.table.rows] == ["3.20", "latest"]


def test_repos_filter(bot):
    reply = bot.say("carol", "repos demo --filter '*nginx'")
    assert reply.data["repositories"] == ["testimages/nginx", "webserver/nginx", "webservers/nginx"]


def test_show_by_full_reference_lists_shared_tags(bot):
    reply = bot.say("carol", "show demo.registry.local/testimages/nginx:1.25")
    assert reply.text == "demo/testimages/nginx:1.25"
    assert dict(reply.fields)["tags"] == "1.25, latest"


def test_show_by_digest(bot):
    digest = bot.registry.resolve("testimages/nginx", "latest")
    assert bot.say("carol", f"show testimages/nginx@{digest}").data["tags"] == ["1.25", "latest"]


def test_unknown_login_server_registry_and_repository(bot):
    assert bot.say("carol", "show other.io/app:1").text == (
        "no registry is configured for login server `other.io`"
    )
    assert bot.say("carol", "tags app --registry prod").text == "no registry `prod`; known: demo"
    assert bot.say("carol", "tags nope").text == "demo: no repository `nope`"
    assert bot.say("carol", "show baseimages/fedora:99").text == (
        "demo: baseimages/fedora has no tag `99`"
    )


def test_whoami_and_registries(bot):
    assert bot.say("carol", "whoami").fields == (("user", "carol"), ("roles", "reader on */*"))
    assert bot.say("nobody", "whoami").fields[-1] == (
        "roles",
        "no roles yet: ask an owner to `grant` you one",
    )
    assert bot.say("carol", "registries").table.rows == (
        ("demo", "oci-layout", "demo.registry.local", "yes"),
    )


def test_help_show_says_how_many_tags_show_lists(bot, registry):
    """`help show` promised "every tag on its digest"; show lists the first 20."""
    assert bot.text("carol", "help show").splitlines()[0] == (
        "show: show an image: digest, size, dates, locks, the first 20 tags on its digest"
    )
    digest = registry.resolve("baseimages/fedora", "24")
    for n in range(1, 25):
        registry.add_tag("baseimages/fedora", f"v{n}", digest)
    fields = dict(bot.say("carol", "show baseimages/fedora:24").fields)
    assert len(fields["tags"].split(" … ")[0].split(", ")) == 20
    assert fields["tags"].endswith("… (25 in all)")
