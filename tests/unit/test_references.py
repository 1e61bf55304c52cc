import pytest

from bot.core.errors import UsageError
from bot.core.references import ImageRef, parse_image

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("baseimages/fedora:24", ImageRef("baseimages/fedora", "24")),
        ("alpine:3.20", ImageRef("alpine", "3.20")),
        (f"baseimages/fedora@{DIGEST}", ImageRef("baseimages/fedora", None, DIGEST)),
        (f"nginx:1.25@{DIGEST}", ImageRef("nginx", "1.25", DIGEST)),
        ("myreg.azurecr.io/team/app:v1", ImageRef("team/app", "v1", None, "myreg.azurecr.io")),
        ("localhost:5000/app:v1", ImageRef("app", "v1", None, "localhost:5000")),
        ("localhost/app:v1", ImageRef("app", "v1", None, "localhost")),
        ("MyReg.AzureCR.io/app:v1", ImageRef("app", "v1", None, "myreg.azurecr.io")),
        ("a.b-c__d/e---f:Tag_1.0-x", ImageRef("a.b-c__d/e---f", "Tag_1.0-x")),
    ],
)
def test_parse_image_accepts(text, expected):
    assert parse_image(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Fedora:24", "`Fedora` is not a valid repository name"),
        ("../etc/passwd:1", "`../etc/passwd` is not a valid repository name"),
        ("repo:-bad", "`-bad` is not a valid tag"),
        ("repo:" + "x" * 129, "is not a valid tag"),
        ("repo@sha256:abc", "`sha256:abc` is not a valid digest"),
        ("baseimages/fedora", "`baseimages/fedora` needs a tag or a digest"),
        ("repo//x:1", "is not a valid repository name"),
        ("repo:", "`` is not a valid tag"),
    ],
)
def test_parse_image_refuses(text, message):
    with pytest.raises(UsageError) as exc:
        parse_image(text)
    assert message in str(exc.value)


def test_parse_image_defaults_tag_only_when_asked():
    assert parse_image("baseimages/fedora", default_tag="latest").tag == "latest"


def test_parse_image_refuses_names_over_255_characters():
    with pytest.raises(UsageError, match="longer than 255"):
        parse_image("a" * 256 + ":1")
