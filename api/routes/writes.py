"""Write endpoints of users: onboarding (``POST /users``), ratings and feedback.

Every write but onboarding needs the user's bearer token (``api.http.auth``); onboarding answers
with a new token. The effects are immediate: see ``api.services.live``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from api.http.auth import account_doc, new_token
from api.http.body import Body, IntField, ListField, NumberField, ObjectField, StringField
from api.http.endpoint import Context, Endpoint, Reply
from api.http.errors import BadRequest
from api.http.params import IDEMPOTENCY_KEY, IntParam, user_id
from api.services.live import (
    ACTIONS,
    allocate_user_id,
    assign_cluster,
    genre_names,
    new_event,
    record,
    require_movies,
)
from api.services.recommendations import ListRequest, live_items, with_evidence
from contract import schema

#: MovieLens 1M's age groups and occupations (the questionnaire's optional answers).
AGE_GROUPS = ("Under 18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
OCCUPATIONS = (
    "other",
    "academic/educator",
    "artist",
    "clerical/admin",
    "college/grad student",
    "customer service",
    "doctor/health care",
    "executive/managerial",
    "farmer",
    "homemaker",
    "K-12 student",
    "lawyer",
    "programmer",
    "retired",
    "sales/marketing",
    "scientist",
    "self-employed",
    "technician/engineer",
    "tradesman/craftsman",
    "unemployed",
    "writer",
)
MAX_ONBOARDING_RATINGS = 100


def _movie_field(required: bool = True) -> IntField:
    return IntField(
        name="movieId",
        required=required,
        minimum=1,
        description="a movieId of the served catalogue",
    )


def _rating_field() -> NumberField:
    return NumberField(
        name="rating",
        required=True,
        minimum=0.5,
        maximum=5.0,
        step=0.5,
        description="0.5 to 5 in steps of 0.5",
    )


ONBOARDING = Body(
    "Onboarding",
    (
        ListField(
            name="genres",
            required=True,
            item=StringField(max_length=40),
            min_items=3,
            max_items=20,
            unique=True,
            description="at least 3 of the data set's genre names (see GET /clusters "
            "or the genre parameter of the recommendation endpoint), case-insensitive",
        ),
        ListField(
            name="ratings",
            item=ObjectField(fields=(_movie_field(), _rating_field())),
            max_items=MAX_ONBOARDING_RATINGS,
            description="favourite (or not) movies, rated",
        ),
        StringField(name="age", choices=AGE_GROUPS, description="optional age group"),
        StringField(name="occupation", choices=OCCUPATIONS, description="optional occupation"),
    ),
    "The new-user questionnaire.",
)
RATING = Body("RatingInput", (_movie_field(), _rating_field()), "A rating of one movie.")
FEEDBACK = Body(
    "FeedbackInput",
    (
        _movie_field(),
        StringField(
            name="action",
            required=True,
            choices=ACTIONS,
            description="like, dislike or not_interested (hides the movie)",
        ),
    ),
    "A reaction to one movie.",
)


def create_user(ctx: Context, n: int, body: dict) -> Reply:
    store, pointer = ctx.store, ctx.pointer
    genres = genre_names(store, pointer, body["genres"])
    ratings: dict[int, float] = {}
    for entry in body.get("ratings") or ():
        if entry["movieId"] in ratings:
            raise BadRequest(f"movie {entry['movieId']} is rated twice")
        ratings[entry["movieId"]] = entry["rating"]
    require_movies(store, pointer, list(ratings))
    cluster = assign_cluster(store, pointer, ratings, genres)
    uid = allocate_user_id(store)
    now = datetime.now(UTC)
    events = [new_event("rating", m, r, now) for m, r in ratings.items()]
    profile = {
        "_id": uid,
        "rev": len(events),
        "ratings": {str(m): r for m, r in ratings.items()},
        "feedback": {},
        "events": events,
        "genres": genres,
        "cluster": cluster,
        "cluster_version": pointer["version"],
        "origin": "onboarding",
        "created_at": now,
        "updated_at": now,
        **{k: body[k] for k in ("age", "occupation") if k in body},
    }
    # the account first: if the store stops answering between the two writes, what is left is an
    # account whose token nobody was given, never a profile that shows without its account
    token = new_token(uid)
    store.online(schema.ACCOUNTS).insert_one(account_doc(uid, token, "onboarding"))
    store.live.begin_write(uid)
    store.online(schema.PROFILES).insert_one(profile)
    store.live.end_write(uid, profile["rev"])
    items = with_evidence(
        store, pointer, live_items(store, pointer, uid, profile, ListRequest(n)), cluster, genres
    )
    return Reply(
        {
            "userId": uid,
            "token": token,
            "cluster": cluster,
            "model_version": pointer["version"],
            "recommendations": items,
        },
        status=201,
        headers={"Location": f"/user/{uid}/recommendation", "Cache-Control": "no-store"},
    )


def rate_movie(ctx: Context, id: int, body: dict, caller: int, idempotency_key: str | None) -> dict:
    require_movies(ctx.store, ctx.pointer, [body["movieId"]])
    event = new_event("rating", body["movieId"], body["rating"])
    rev, event = record(ctx.store, id, event, idempotency_key)
    return {
        "userId": id,
        "movieId": body["movieId"],
        "rating": body["rating"],
        "rev": rev,
        "event": _ack(event),
    }


def send_feedback(
    ctx: Context, id: int, body: dict, caller: int, idempotency_key: str | None
) -> dict:
    require_movies(ctx.store, ctx.pointer, [body["movieId"]])
    event = new_event(body["action"], body["movieId"])
    rev, event = record(ctx.store, id, event, idempotency_key)
    return {
        "userId": id,
        "movieId": body["movieId"],
        "action": body["action"],
        "rev": rev,
        "event": _ack(event),
    }


def _ack(event: dict) -> dict:
    return {"id": event["id"], "type": event["type"], "at": event["at"]}


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "/users",
        create_user,
        "Onboard a new user",
        description=(
            "Creates a user from a short questionnaire (3+ genres, optional ratings, age group and "
            "occupation), assigns a cluster with the served clustering model, and answers with the "
            "user's id, their bearer token (shown only once) and first recommendations (the same "
            "items as GET /user/{id}/recommendation, source live)."
        ),
        params=(
            IntParam(
                name="n", minimum=1, maximum=50, default=10, description="how many recommendations"
            ),
        ),
        response="NewUser",
        errors=(400, 404, 503),
        tag="users",
        method="POST",
        body=ONBOARDING,
        status=201,
    ),
    Endpoint(
        "/user/<id>/ratings",
        rate_movie,
        "Rate a movie",
        description=(
            "Records the rating as an event and applies it at once: the movie leaves the user's "
            "recommendations and their predicted ratings are re-computed. A later rating of the "
            "same movie replaces it. Needs the user's token."
        ),
        params=(user_id(), IDEMPOTENCY_KEY),
        response="FeedbackAck",
        errors=(400, 404, 422, 503),
        tag="users",
        method="POST",
        body=RATING,
        auth="user",
    ),
    Endpoint(
        "/user/<id>/feedback",
        send_feedback,
        "Like, dislike or hide a movie",
        description=(
            "Records the reaction as an event and applies it at once: the movie leaves the list; "
            "a like pulls its similar movies up, a dislike pushes them down; not_interested only "
            "hides it. Needs the user's token."
        ),
        params=(user_id(), IDEMPOTENCY_KEY),
        response="FeedbackAck",
        errors=(400, 404, 422, 503),
        tag="users",
        method="POST",
        body=FEEDBACK,
        auth="user",
    ),
)
