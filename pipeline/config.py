"""The pipeline's typed configuration: one frozen dataclass per component, composed here.

Each component's config lives next to the component (as in LensKit); this module only
composes them and resolves the few paths that depend on where the repository is.
Nothing here reads the environment: the CLI does that and passes values in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from contract.embedded import EmbeddedConfig
from pipeline.data.source import DatasetConfig, repo_root
from pipeline.data.splitting import SplitConfig
from pipeline.features.tables import FeatureConfig
from pipeline.models.clustering import ClusterConfig
from pipeline.models.rating import RatingModelConfig
from pipeline.models.similarity import SimilarityConfig
from pipeline.models.topn import TopNConfig
from pipeline.publish.store import StoreConfig
from pipeline.runtime import DaskConfig

REPO_ROOT = repo_root()
BUNDLED_TMDB = REPO_ROOT / "resources" / "tmdb"


@dataclass(frozen=True)
class StoreTarget:
    url: str | None = None  # mongodb:// URL; None = the embedded SecantusDB server
    database: str = "movietime"
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    store: StoreConfig = field(default_factory=StoreConfig)


@dataclass(frozen=True)
class PipelineConfig:
    dataset: str = "ml-latest-small"  # a named MovieLens data set or a folder
    tmdb: str | None = str(BUNDLED_TMDB)  # folder with the TMDB metadata bundle; None: no TMDB
    run_dir: str = "runs"  # evaluation reports go to run_dir/<version>/
    evaluate: bool = True  # hold-out evaluation before the refit on all data
    top_n: int = 50  # precomputed list length per user
    # live model: largest EASE weights kept per movie (contract.live_model)
    live_neighbors: int = 200
    use_feedback: bool = True  # train the final refit on the API's feedback events too
    k: int = 10  # cut-off of the top-N metrics
    relevance_threshold: float = 4.0  # a held-out rating this high is "relevant"
    data: DatasetConfig = field(default_factory=DatasetConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    clusters: ClusterConfig = field(default_factory=ClusterConfig)
    rating: RatingModelConfig = field(default_factory=RatingModelConfig)
    topn: TopNConfig = field(default_factory=TopNConfig)
    similarity: SimilarityConfig = field(default_factory=SimilarityConfig)
    dask: DaskConfig = field(default_factory=DaskConfig)
    target: StoreTarget = field(default_factory=StoreTarget)
    # Above this many ratings, the large-data profile applies (see ``for_size``; what it costs is
    # measured in the README).
    large_data_ratings: int = 2_000_000

    def for_size(self, n_ratings: int) -> "PipelineConfig":
        """The config to use for ``n_ratings``: as given, or the large-data profile above
        ``large_data_ratings``: one held-out stacking fold instead of 5 (each fold refits every
        collaborative model) with at most 500,000 of its rows for the boosting (1,000,000 by
        default) and at most 150 trees of 31 leaves at rate 0.1 (it also predicts every listed
        movie of every user: the smaller trees cost half as much), the top-N item model capped at
        the 15,000 most-rated movies, and each movie's 2,000 largest weights of the top-N rating
        model and 500 of its positive model kept (``TopNConfig.score_neighbors``,
        ``positive_neighbors``: what each Dask worker holds falls from two dense item x item
        matrices to about a fifth)."""
        if n_ratings <= self.large_data_ratings:
            return self
        return replace(
            self,
            rating=replace(
                self.rating,
                stack_folds=1,
                max_gbm_rows=min(self.rating.max_gbm_rows, 500_000),
                gbm_max_iter=min(self.rating.gbm_max_iter, 150),
                gbm_learning_rate=max(self.rating.gbm_learning_rate, 0.1),
                gbm_max_leaf_nodes=min(self.rating.gbm_max_leaf_nodes, 31),
            ),
            topn=replace(
                self.topn,
                max_items=min(self.topn.max_items, 15_000),
                score_neighbors=self.topn.score_neighbors or 2_000,
                positive_neighbors=self.topn.positive_neighbors or 500,
            ),
        )

    def params(self) -> dict:
        """The parameters worth recording with a model version (no URLs or local paths)."""
        d = asdict(self)
        d.pop("target")
        d["dask"].pop("scheduler", None)
        return d
