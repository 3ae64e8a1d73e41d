"""Pictures of results: a file's ECG on ECG paper with its window probabilities (``figure``),
from the same readers and preparation as the Lambda (``data``), as HTML pages (``page``)."""
