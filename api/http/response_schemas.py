"""JSON Schemas (OpenAPI 3.1 / JSON Schema 2020-12) of every response body.

The tests validate real responses against these, so the spec cannot drift from the code.
"""

from __future__ import annotations

from typing import Any, get_args

from api.http.errors import ERROR_CODES
from contract.schema import ReasonKind


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str] | None = None, extra: bool = False, **props: Any) -> dict[str, Any]:
    """An object schema; every listed property is required unless ``required`` says otherwise."""
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": extra,
    }


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    kind = out["type"]
    out["type"] = [*kind, "null"] if isinstance(kind, list) else [kind, "null"]
    return out


def array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


INT = {"type": "integer"}
NUM = {"type": "number"}
STR = {"type": "string"}
VERSION = {"type": "string", "description": "the served model version (models._id)"}

_MOVIE = dict(
    movieId=INT,
    title=nullable(STR) | {"description": 'MovieLens title, e.g. "Matrix, The (1999)"'},
    name=nullable(STR) | {"description": 'display title without the year, e.g. "The Matrix"'},
    year=nullable(INT),
    genres=array(STR),
    poster_url=nullable(STR),
)
_ERROR = obj(
    code={"type": "string", "enum": list(ERROR_CODES)},
    message={"type": "string", "description": "what is wrong, for people"},
)
_PAGE = dict(
    page=INT | {"minimum": 1},
    per_page=INT | {"minimum": 1},
    total=INT | {"minimum": 0, "description": "items on all pages"},
    pages=INT | {"minimum": 0},
)

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": obj(error=_ERROR),
    "Movie": obj(**_MOVIE),
    "Reason": obj(
        required=["kind", "text"],
        kind={
            "type": "string",
            "enum": list(get_args(ReasonKind)),
        },
        text=STR,
        movieId=INT | {"description": "the liked movie (kind because_you_liked)"},
        evidence=array(STR)
        | {
            "description": "what the reason rests on, from the data: the genres, tags, TMDB "
            "keywords and TMDB collection the liked movie and this one share (rarest first), "
            "or the genres of "
            "this movie that drive the user's taste group or that they picked; absent when "
            "there is nothing to show"
        },
    ),
    "Recommendation": obj(
        **_MOVIE,
        predicted_rating=nullable(NUM)
        | {"description": "the rating model's estimate (0.5-5); null in fallbacks"},
        score=nullable(NUM) | {"description": "ranking score; the list order is the rank"},
        reason=nullable(ref("Reason")),
    ),
    "Recommendations": obj(
        userId=INT,
        model_version=VERSION,
        source={
            "type": "string",
            "enum": ["precomputed", "live", "fallback_cluster", "fallback_popular"],
            "description": "live: re-scored at request time from the user's feedback",
        },
        genre=nullable(STR),
        diversity=NUM | {"minimum": 0, "maximum": 1},
        recommendations=array(ref("Recommendation")),
    ),
    "RatedMovie": obj(
        **_MOVIE,
        rating=NUM,
        timestamp=INT | {"description": "unix seconds"},
        rated_at=nullable(STR) | {"format": "date-time"},
    ),
    "RatedPage": obj(
        userId=INT,
        model_version=VERSION,
        sort={"type": "string", "enum": ["timestamp", "rating", "movieId"]},
        order={"type": "string", "enum": ["desc", "asc"]},
        **_PAGE,
        items=array(ref("RatedMovie")),
    ),
    "ClusterUser": obj(userId=INT, n_ratings=nullable(INT), mean_rating=nullable(NUM)),
    "ClusterUserPage": obj(
        cluster=INT, model_version=VERSION, **_PAGE, items=array(ref("ClusterUser"))
    ),
    "ScoredMovie": obj(**_MOVIE, score=nullable(NUM), rank=INT | {"minimum": 1}),
    "OnboardingMovie": obj(**_MOVIE, rank=INT | {"minimum": 1}),
    "OnboardingMoviePage": obj(model_version=VERSION, **_PAGE, items=array(ref("OnboardingMovie"))),
    "ClusterMoviePage": obj(
        cluster=INT, model_version=VERSION, **_PAGE, items=array(ref("ScoredMovie"))
    ),
    "Metadata": obj(
        movieId=INT,
        model_version=VERSION,
        tmdbId=nullable(INT),
        imdbId=nullable(INT),
        title=nullable(STR),
        overview=nullable(STR),
        tagline=nullable(STR),
        runtime=nullable(NUM),
        release_date=nullable(STR),
        original_language=nullable(STR),
        poster_path=nullable(STR),
        poster_url=nullable(STR),
        vote_average=nullable(NUM),
        vote_count=nullable(INT),
        keywords=array(STR),
        collection=nullable(STR),
        companies=array(STR),
        tags=array(STR),
        source=nullable(STR),
    ),
    "SimilarMovies": obj(**_MOVIE, model_version=VERSION, similar=array(ref("ScoredMovie"))),
    "SearchResult": obj(
        **_MOVIE,
        match={"type": "string", "enum": ["exact", "word_prefix", "prefix", "fuzzy"]},
        score=NUM
        | {
            "minimum": 0,
            "maximum": 100,
            "description": "how closely the query's words match (100: exact or prefix)",
        },
        n_ratings=nullable(INT),
        mean_rating=nullable(NUM),
        popularity=nullable(NUM),
    ),
    "SearchResults": obj(
        query=STR,
        year=nullable(INT)
        | {"description": "a year taken from the query, that narrowed the results"},
        genre=nullable(STR) | {"description": "the genre the results were filtered by"},
        model_version=VERSION,
        results=array(ref("SearchResult")),
    ),
    "Cluster": obj(
        clusterId=INT,
        size=INT | {"description": "number of users"},
        persona=array(STR) | {"description": "most characteristic genres first"},
        top_movies=array(ref("ScoredMovie")),
    ),
    "Clusters": obj(model_version=VERSION, clusters=array(ref("Cluster"))),
    "ClusterDetail": obj(
        clusterId=INT,
        model_version=VERSION,
        size=INT | {"description": "number of users"},
        persona=array(STR) | {"description": "most characteristic genres first"},
        profile={
            "type": "object",
            "additionalProperties": NUM,
            "description": "genre -> weight: how the cluster's taste differs from the average",
        },
        top_movies=array(ref("ScoredMovie")),
    ),
    "Health": obj(
        required=["status", "store", "model_version", "published_at"],
        status={
            "type": "string",
            "enum": ["ok", "degraded"],
            "description": "degraded: the store is not answering; this worker serves what it holds "
            "(answers say Served-From: memory)",
        },
        store={"type": "string", "enum": ["ok", "not_answering"]},
        model_version=VERSION
        | {"description": "the served version (when degraded: the last one read)"},
        published_at=nullable(STR) | {"format": "date-time"},
        store_down_s=NUM
        | {"description": "when degraded: seconds since the store stopped answering"},
    ),
    "NewUser": obj(
        userId=INT | {"description": "the new user's id (from 1,000,000,001 up)"},
        token={
            "type": "string",
            "description": "bearer token for this user's writes; shown only once",
        },
        cluster=nullable(INT),
        model_version=VERSION,
        recommendations=array(ref("Recommendation")),
    ),
    "FeedbackAck": obj(
        required=["userId", "movieId", "event", "rev"],
        userId=INT,
        movieId=INT,
        rating=NUM,
        action={"type": "string", "enum": ["like", "dislike", "not_interested"]},
        event=obj(id=STR, type=STR, at=STR | {"format": "date-time"}),
        rev=INT
        | {
            "description": "the user's profile revision after this event: its position in the profile's events (1 = the first)"
        },
    ),
    "GroupCreated": obj(
        slug=STR | {"pattern": "^[A-Za-z0-9_-]{22}$", "description": "128 random bits, URL-safe"},
        url=STR
        | {"description": "the group's list, /groups/{slug}/recommendation (also Location)"},
        members=array(INT),
        created_at=STR | {"format": "date-time"},
    ),
    "GroupItem": obj(
        **_MOVIE,
        score=NUM | {"description": "the members' mean place in their own lists (1 = first)"},
        members=array(obj(userId=INT, predicted_rating=NUM))
        | {"description": "every member's predicted rating (0.5-5), in the group's order"},
        **{
            "from": array(INT)
            | {"description": "the members whose own list holds the movie, highest place first"}
        },
    ),
    "GroupRecommendations": obj(
        slug=STR | {"pattern": "^[A-Za-z0-9_-]{22}$"},
        members=array(INT),
        model_version=VERSION,
        diversity=NUM | {"minimum": 0, "maximum": 1},
        recommendations=array(ref("GroupItem")),
    ),
    "ListCreated": obj(
        slug=STR | {"pattern": "^[A-Za-z0-9_-]{22}$", "description": "128 random bits, URL-safe"},
        url=STR | {"description": "the list's path, /lists/{slug} (also the Location header)"},
    ),
    "MovieList": obj(
        slug=STR | {"pattern": "^[A-Za-z0-9_-]{22}$"},
        url=STR,
        title=STR,
        description=nullable(STR),
        userId=INT | {"description": "the list's owner"},
        created_at=STR | {"format": "date-time"},
        updated_at=STR | {"format": "date-time"},
        model_version=VERSION,
        movies=array(ref("Movie"))
        | {
            "description": "in the list's order; a movie the served version "
            "no longer has keeps its movieId with null details"
        },
    ),
    "ListDeleted": obj(deleted=STR | {"description": "the deleted list's slug"}),
    "HealthDown": obj(
        status={"const": "unavailable"},
        store={
            "type": "string",
            "enum": ["unavailable", "empty"],
            "description": "unavailable: no answer; empty: nothing published yet",
        },
        error=_ERROR,
    ),
}
