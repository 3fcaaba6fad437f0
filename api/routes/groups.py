"""Watching together: ``POST /groups`` and ``GET /groups/<slug>/recommendation``.

A group is one document of the online ``groups`` collection (``contract.schema.GROUPS``)::

    {_id: <slug>, members: [userId, ...], created_at}

Anyone may create a group of 2 to 8 users who are data-set users of the served version or have
onboarded (profiles are public here, as ``/user/<id>/rated`` is); nothing is written to a
member's profile through a group. Its slug is a list slug (``api.routes.lists``: 128 random
bits). The group's list is made at request time from every member's current live state
(``contract.groups``), so a member's rating or feedback changes it at once.
"""

from __future__ import annotations

import numpy as np

from api.http.body import Body, IntField, ListField
from api.http.endpoint import Context, Endpoint, Reply
from api.http.errors import BadRequest, NotFound
from api.http.params import IntParam, variety_params
from api.http.views import movie_summary
from api.routes.lists import SlugParam, insert_with_slug, now_ms
from api.services.live import cached_training_ratings, signals, similar_lists
from api.services.recommendations import ListRequest
from contract import schema
from contract.groups import CANDIDATES, Member, as_members, recommend_group

MIN_MEMBERS, MAX_MEMBERS = 2, 8

GROUP_INPUT = Body(
    "GroupInput",
    (
        ListField(
            name="members",
            required=True,
            item=IntField(minimum=1, description="a data-set or onboarded userId"),
            min_items=MIN_MEMBERS,
            max_items=MAX_MEMBERS,
            unique=True,
            description=f"{MIN_MEMBERS} to {MAX_MEMBERS} different users",
        ),
    ),
    "Who watches together.",
)
SLUG = SlugParam(name="slug", where="path", description="the group's slug, from POST /groups")


def create_group(ctx: Context, body: dict) -> Reply:
    members = [int(u) for u in body["members"]]
    unknown = [u for u in members if not _known(ctx, u)]
    if unknown:
        raise BadRequest(f"unknown member(s): {', '.join(map(str, unknown))}")
    now = now_ms()
    slug = insert_with_slug(
        ctx.store.online(schema.GROUPS), {"members": members, "created_at": now}
    )
    url = f"/groups/{slug}/recommendation"
    ctx.store.cached(ctx.pointer, ("group", slug), lambda: tuple(members))  # its list comes next
    return Reply(
        {"slug": slug, "url": url, "members": members, "created_at": now},
        status=201,
        headers={"Location": url},
    )


def group_recommendations(
    ctx: Context, slug: str, n: int, diversity: float, exclude: frozenset[int] | None
) -> dict:
    store, pointer = ctx.store, ctx.pointer

    def read() -> tuple[int, ...]:
        doc = store.online(schema.GROUPS).find_one({"_id": slug}, {"members": 1})
        if doc is None:
            raise NotFound(f"group {slug} not found")  # not kept: nothing is cached
        return tuple(int(u) for u in doc.get("members") or ())

    members = list(store.cached(pointer, ("group", slug), read))  # a group never changes
    model = store.live_model(pointer)
    kept = _members(store, pointer, model, members)
    out = recommend_group(model, kept, len(model.movie_ids))
    ask = ListRequest(n, None, diversity, exclude or frozenset())
    # the candidates a list of n is cut from: n, or as many as a user's stored list to re-rank
    pool = [k for k, mid in enumerate(out.movie_ids.tolist()) if mid not in ask.exclude]
    pool = pool[: ask.limit or CANDIDATES]
    details = store.movie_details(pointer, out.movie_ids[pool].tolist())
    items = []
    for k in pool:
        mid = int(out.movie_ids[k])
        d = details.get(mid)
        if d is None or not ask.wants(mid, d):
            continue
        tastes = np.flatnonzero(out.places[k] > 0)
        tastes = tastes[np.argsort(-out.places[k][tastes], kind="stable")]
        items.append(
            {
                **movie_summary(mid, d),
                "score": round(float(out.scores[k]), 5),
                "members": [
                    {"userId": u, "predicted_rating": round(float(out.predicted[k, j]), 3)}
                    for j, u in enumerate(members)
                ],
                "from": [members[j] for j in tastes.tolist()],
            }
        )
    return {
        "slug": slug,
        "members": members,
        "model_version": pointer["version"],
        "diversity": diversity,
        "recommendations": ask.cut(items),
    }


def _members(store, pointer, model, users: list[int]) -> list[Member]:
    """Each member's own list and fold-in, kept per version, user and rev: a group's list is
    made again only for the members who wrote since. A member's own list is the one they are
    served alone: their published list while they have no live state, else scored by the live
    model, those together (``contract.groups.as_members``)."""
    profiles = {user: store.live.profile(user) for user in users}
    keys = [("group-member", u, int((profiles[u] or {}).get("rev") or 0)) for u in users]

    def compute(missing: list) -> list[Member]:
        users = [u for _, u, _ in missing]
        quiet = [u for u in users if profiles[u] is None]  # served their published list
        # their list and their training ratings in one read
        published = store.users(pointer, quiet, ("top.movieId", "ratings_packed")) if quiet else {}
        bases = cached_training_ratings(store, pointer, users, published)
        sigs = {u: signals(base, profiles[u]) for base, u in zip(bases, users)}
        listed = {
            u: [int(e["movieId"]) for e in published[u]["top"]]
            for u in quiet
            if (published.get(u) or {}).get("top")
        }
        near = [
            None
            if u in listed
            else similar_lists(store, pointer, model, sigs[u].boost_sources or {})
            for u in users
        ]
        own = [listed.get(u) for u in users]
        return as_members(model, [sigs[u] for u in users], near, published=own)

    return store.cached_many(pointer, keys, compute)


def _known(ctx: Context, user: int) -> bool:
    if ctx.store.live.profile(user) is not None:
        return True
    return ctx.store.user(ctx.pointer, user, ("_id",)) is not None


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/groups",
        create_group,
        "Start a group watching together",
        description=(
            f"Saves a group of {MIN_MEMBERS} to {MAX_MEMBERS} users (data-set or onboarded) and "
            "answers with its slug and the URL of its list (also in Location). No token needed: "
            "nothing is written to a member's profile through a group. An unknown member is a 400."
        ),
        response="GroupCreated",
        errors=(400, 503),
        tag="groups",
        method="POST",
        body=GROUP_INPUT,
        status=201,
    ),
    Endpoint(
        "/groups/<slug>/recommendation",
        group_recommendations,
        "A group's list",
        description=(
            "Movies for the group to watch together, made now from the list each member is served "
            "alone (published, or live once they rated or reacted): "
            "none that a member rated, liked, disliked or hid, none that a member is predicted to "
            "rate below 3, or below their own mean rating when that is lower (no misery), ranked by "
            "the members' mean place in their own lists. Each "
            "item gives every member's predicted rating and whose lists it comes from (from). "
            "diversity and exclude as on a user's list."
        ),
        params=(
            SLUG,
            IntParam(name="n", minimum=1, maximum=50, default=10, description="how many (1 to 50)"),
            *variety_params(),
        ),
        response="GroupRecommendations",
        errors=(400, 404, 503),
        tag="groups",
    ),
)
