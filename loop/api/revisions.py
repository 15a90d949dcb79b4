"""What a deploy tool knows of a revision, mapped to the application repository's commit.

In GitOps the revision Argo CD syncs is the config repository's commit, not the application's:
what names the application's commit is the image (`ghcr.io/acme/shop:3f2a9c1`, `…:v1.4.2`), an
`org.opencontainers.image.revision` label or an annotation. A deploy body or a gate request may
carry, instead of `sha`:

- `image`: one image reference, or `images`: a list of them (Argo CD's
  `.app.status.summary.images`), of which the service's (`[services.NAME.revisions] image`) is
  read: its tag, cut by `tag_pattern`'s `ref` group, is the revision;
- `revision`: the revision itself (a label's or an annotation's value, a tag).

A revision of 40 hex digits is a commit id and is checked in the repository; a shorter hex one
(7 or more) is tried as a tag, then as a commit id prefix; anything else as a tag. `candidates`
decides what to try (pure); `resolve` asks the forge, one candidate after the other, and a
revision that names no commit is refused with a 422 naming everything tried, before anything is
recorded.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from loop.api.fields import IngestError, bad_field, read_field
from loop.config import RevisionSettings, ServiceSettings
from rollback.forge import ForgeError, ForgeReads, ForgeUnavailable

_FULL_SHA = re.compile(r"[0-9a-f]{40}")
_SHA_PREFIX = re.compile(r"[0-9a-f]{7,39}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,127}")
"""An OCI tag (`[\\w][\\w.-]{0,127}`) or a git tag name of the same characters (and `+`)."""
_DIGEST = re.compile(r"@[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]{32,}$")
FIELDS = ("sha", "revision", "image", "images")
"""The body fields that may name the deployed commit; exactly one is given."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One thing to look up: `ref` as the forge is asked for it, `what` as a person reads it."""

    ref: str
    what: str


def image_tag(image: str, rule: RevisionSettings, path: str) -> str:
    """The revision an image reference carries: its tag, cut by `tag_pattern`."""
    reference = _DIGEST.sub("", image)
    name, _, tag = reference.rpartition(":")
    if not name or "/" in tag:  # `host:5000/app` has a port, not a tag
        raise bad_field(path, f"image {image!r} has no tag (a digest names no commit)")
    if rule.image and name != rule.image:
        raise IngestError(
            422, "unknown_image", f"{path}: image {name!r} is not the service's {rule.image!r}"
        )
    if not rule.tag_pattern:
        return tag
    match = re.fullmatch(rule.tag_pattern, tag)
    if match is None:
        raise IngestError(422, "unresolved_revision",
                          f"{path}: tag {tag!r} does not match tag_pattern "
                          f"{rule.tag_pattern!r}")  # fmt: skip
    return match.group("ref") if "ref" in match.re.groupindex else match.group(0)


def pick_image(images: list[Any], rule: RevisionSettings, path: str) -> tuple[str, str]:
    """The service's image among `images` and its path in the body."""
    if not all(isinstance(i, str) for i in images):
        raise bad_field(path, "must be a list of image references")
    if not rule.image:
        if len(images) != 1:
            raise IngestError(422, "unknown_image",
                              f"{path}: {len(images)} images and no `revisions.image` in the "
                              "service's config to pick one")  # fmt: skip
        return images[0], f"{path}[0]"
    mine = [(i, n) for n, i in enumerate(images) if _DIGEST.sub("", i).rpartition(":")[0]
            == rule.image]  # fmt: skip
    if len(mine) != 1:
        found = f"{len(mine)} images of {rule.image!r} among {images!r}"
        raise IngestError(422, "unknown_image", f"{path}: {found}")
    image, index = mine[0]
    return image, f"{path}[{index}]"


def revision_of(data: Mapping[str, Any], service: ServiceSettings | None) -> tuple[str, str] | None:
    """The revision a body names and the field it came from; None when it names a `sha` (or
    nothing: the deploy parser names what is missing)."""
    given = [f for f in FIELDS if data.get(f) is not None]
    if len(given) > 1:
        raise bad_field("sha", f"give exactly one of {', '.join(FIELDS)}")
    if not given or given[0] == "sha":
        return None
    field = given[0]
    if service is None:
        named = data.get("service")
        raise IngestError(422, "unknown_service", f"service {named!r} is not in the config")
    rule = service.revisions
    if field == "revision":
        return read_field(data, "revision", str), "revision"
    if field == "image":
        image = read_field(data, "image", str)
        return image_tag(image, rule, "image"), "image"
    image, path = pick_image(read_field(data, "images", list), rule, "images")
    return image_tag(image, rule, path), path


def candidates(revision: str, path: str) -> tuple[Candidate, ...]:
    """What to look up for `revision`, in order (pure)."""
    if _FULL_SHA.fullmatch(revision):
        return (Candidate(revision, f"commit {revision}"),)
    if not _TAG.fullmatch(revision):
        raise bad_field(path, f"revision {revision!r} is neither a tag nor a commit id")
    tag = Candidate(f"refs/tags/{revision}", f"tag {revision}")
    if _SHA_PREFIX.fullmatch(revision):
        return tag, Candidate(revision, f"commit prefix {revision}")
    return (tag,)


async def resolve(forge: ForgeReads, service: ServiceSettings, revision: str, path: str) -> str:
    """The full sha of the service's commit `revision` names; 422 naming what was tried."""
    tried = candidates(revision, path)
    for candidate in tried:
        try:
            sha = await forge.resolve_commit(service.repo, candidate.ref)
        except ForgeUnavailable as exc:
            message = f"cannot resolve {path} {revision!r} now: {exc}"
            raise IngestError(503, "forge_unavailable", message) from exc
        except ForgeError as exc:
            message = f"GitHub refused resolving {path} {revision!r}: {exc}"
            raise IngestError(502, "forge_refused", message) from exc
        if sha is not None:
            return sha
    raise IngestError(
        422, "unresolved_revision",
        f"{path} {revision!r} names no commit of {service.repo}: tried "
        + ", ".join(c.what for c in tried),
    )  # fmt: skip


async def with_sha(
    data: Any, service: ServiceSettings | None, forge: ForgeReads
) -> Mapping[str, Any] | Any:
    """`data` with `sha` set from the revision it names (unchanged when it names a `sha` or is
    no object: the deploy parser reads or refuses those)."""
    if not isinstance(data, Mapping):
        return data
    found = revision_of(data, service)
    if found is None or service is None:
        return data
    revision, path = found
    sha = await resolve(forge, service, revision, path)
    return {**{k: v for k, v in data.items() if k not in FIELDS}, "sha": sha}
