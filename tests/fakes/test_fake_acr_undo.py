"""The fake ACR's manifest bytes and soft delete: it must refuse what ACR refuses.

Raw HTTPS with a token the fake issued (the wire, not the SDK): GET serves the exact bytes,
a PUT must hash to the digest it names and may not bring back reclaimed layers, a deleted
manifest goes to the recycle bin only when soft delete is on, is listed there, is restored
under a tag (azure-cli's `acr manifest restore` shape), and blocks a push of its digest."""

import hashlib
import json
import ssl
import urllib.error
import urllib.request

import pytest

from tests.support.fake_acr import OCI_MANIFEST


@pytest.fixture
def wire(fake_acr):
    fake_acr.state.issued.add("raw-token")
    context = ssl.create_default_context(cafile=fake_acr.ca_path)

    def call(method, path, body=None, content_type="application/json"):
        request = urllib.request.Request(
            fake_acr.url + path,
            data=body,
            method=method,
            headers={"Authorization": "Bearer raw-token", "Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(request, context=context) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    return call


def test_get_serves_the_exact_bytes_under_their_digest(fake_acr, wire):
    digest = fake_acr.push_image("ci/app", "v1")
    status, headers, body = wire("GET", "/v2/ci/app/manifests/v1")
    assert status == 200 and headers["Docker-Content-Digest"] == digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    assert headers["Content-Type"] == OCI_MANIFEST
    assert wire("GET", f"/v2/ci/app/manifests/{digest}")[2] == body
    made_up = "sha256:" + "1" * 64
    fake_acr.push("ci/app", "v2", made_up)  # made up by digest: no bytes to serve
    assert wire("GET", "/v2/ci/app/manifests/v2")[0] == 404


def test_put_must_match_its_digest_and_its_layers_must_be_there(fake_acr, wire):
    digest = fake_acr.push_image("ci/app", "v1")
    body = wire("GET", "/v2/ci/app/manifests/v1")[2]
    wrong = "sha256:" + "2" * 64
    status, _, answer = wire("PUT", f"/v2/ci/app/manifests/{wrong}", body, OCI_MANIFEST)
    assert status == 400 and json.loads(answer)["errors"][0]["code"] == "DIGEST_INVALID"
    status, headers, _ = wire("PUT", "/v2/ci/app/manifests/again", body, OCI_MANIFEST)
    assert status == 201 and headers["Docker-Content-Digest"] == digest
    assert fake_acr.state.repositories["ci/app"]["again"].digest == digest
    fake_acr.state.reclaimed.add(digest)
    status, _, answer = wire("PUT", f"/v2/ci/app/manifests/{digest}", body, OCI_MANIFEST)
    assert status == 404 and json.loads(answer)["errors"][0]["code"] == "MANIFEST_BLOB_UNKNOWN"


def test_without_soft_delete_a_deleted_manifest_is_gone(fake_acr, wire):
    digest = fake_acr.push_image("ci/app", "v1")
    assert wire("DELETE", f"/v2/ci/app/manifests/{digest}")[0] == 202
    status, _, listing = wire("GET", "/acr/v1/_deleted/ci/app/_manifests")
    assert status == 200 and json.loads(listing)["manifests"] == []
    assert wire("POST", f"/acr/v1/_deleted/ci/app/_manifests/{digest}", b'{"tag": "v1"}')[0] == 404


def test_soft_delete_lists_restores_and_blocks_a_push_of_the_digest(fake_acr, wire):
    fake_acr.state.soft_delete = True
    digest = fake_acr.push_image("ci/app", "v1")
    body = wire("GET", "/v2/ci/app/manifests/v1")[2]
    assert wire("DELETE", f"/v2/ci/app/manifests/{digest}")[0] == 202
    assert wire("GET", "/v2/ci/app/manifests/v1")[0] == 404
    listing = json.loads(wire("GET", "/acr/v1/_deleted/ci/app/_manifests")[2])["manifests"]
    assert [(m["digest"], m["tags"]) for m in listing] == [(digest, ["v1"])]
    status, _, answer = wire("PUT", f"/v2/ci/app/manifests/{digest}", body, OCI_MANIFEST)
    assert status == 400  # ACR: a soft-deleted digest is restored, not pushed
    assert "soft-deleted" in json.loads(answer)["errors"][0]["message"]
    status, _, _ = wire(
        "POST", f"/acr/v1/_deleted/ci/app/_manifests/{digest}?force=false", b'{"tag": "v1"}'
    )
    assert status == 200
    assert wire("GET", "/v2/ci/app/manifests/v1")[2] == body
    assert json.loads(wire("GET", "/acr/v1/_deleted/ci/app/_manifests")[2])["manifests"] == []


def test_the_recycle_bin_needs_its_own_token_scope(fake_acr):
    """Without a token, the bin's paths answer the challenge naming the repository."""
    context = ssl.create_default_context(cafile=fake_acr.ca_path)
    request = urllib.request.Request(fake_acr.url + "/acr/v1/_deleted/ci/app/_manifests")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, context=context)
    assert caught.value.code == 401
    assert 'scope="repository:ci/app:deleted_read"' in caught.value.headers["WWW-Authenticate"]
