"""Read data files into train/dev/test splits and turn them into batches.

Classification: a table (csv / tsv / jsonl / parquet) with text column(s) and a label column.
Causal LM: a plain text file (or a table's text column), tokenized and cut into blocks.

One package, one concern per module: ``files`` (reading tables and text), ``labels`` (label values -> ids),
``splits`` (cutting dev / test / validation, sample limits), ``layout`` (separators, headers, columns by name or
position), ``hf`` (Hugging Face datasets), ``sources`` (one way in for every data field, and the layout check
``validate`` runs), ``classification`` and ``lm`` (the loaders a run calls), ``batching`` (tokenized splits and
loaders). The names below are the public surface
(``from compressor import data as D``).
"""

from compressor.data.batching import Encoded, concat, encode_blocks, encode_split, make_loader
from compressor.data.classification import known_texts, load_classification, load_transfer, table_texts
from compressor.data.files import _fmt, check_texts, read_table, read_text
from compressor.data.labels import MAX_LABELS, label_key
from compressor.data.layout import LayoutError
from compressor.data.lm import lm_blocks, lm_text, load_causal_lm, load_lm_text
from compressor.data.sources import check_layout, open_table
from compressor.data.splits import Dataset, Split

__all__ = [
    "MAX_LABELS",
    "Dataset",
    "Encoded",
    "LayoutError",
    "Split",
    "_fmt",
    "check_layout",
    "check_texts",
    "concat",
    "encode_blocks",
    "encode_split",
    "known_texts",
    "label_key",
    "lm_blocks",
    "lm_text",
    "load_causal_lm",
    "load_classification",
    "load_lm_text",
    "load_transfer",
    "make_loader",
    "open_table",
    "read_table",
    "read_text",
    "table_texts",
]
