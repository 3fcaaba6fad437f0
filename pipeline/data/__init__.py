"""Stage 1, the data: MovieLens in any layout (fetch, checksums, parsing, quality report), TMDB
metadata, synthetic sets with MovieLens shapes, the train/test split, and the API's feedback
events as training ratings."""
