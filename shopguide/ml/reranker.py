"""Cross-encoder reranker: reads a query and a product text together and scores the pair."""

from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from .encoder import ModelNotFound, compute_in
from .precision import use_bfloat16

PAIR_MAX_LENGTH = 64


class CrossEncoder:
    """A transformer with one output logit for "[CLS] query [SEP] product [SEP]"."""

    def __init__(self, path, precision="auto"):
        self.path = Path(path)
        if not (self.path / "config.json").is_file():
            raise ModelNotFound(f"No transformer model in {self.path} (config.json is missing).")
        self.bfloat16 = use_bfloat16(precision)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path)
        self.model = AutoModelForSequenceClassification.from_pretrained(self.path, num_labels=1)
        self.model.eval()

    def logits(self, queries, texts, max_length=PAIR_MAX_LENGTH):
        batch = self.tokenizer(
            list(queries),
            list(texts),
            padding=True,
            truncation="only_second",
            max_length=max_length,
            return_tensors="pt",
        )
        with compute_in(self.bfloat16):
            return self.model(**batch).logits.squeeze(-1).float()

    def score(self, query, texts, batch_size=32):
        """Relevance logits of ``texts`` for ``query`` (numpy array, higher is better)."""
        texts = list(texts)
        scores = np.zeros(len(texts), dtype=np.float32)
        was_training = self.model.training
        if was_training:
            self.model.eval()
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                scores[start : start + len(chunk)] = self.logits([query] * len(chunk), chunk).numpy()
        if was_training:
            self.model.train()
        return scores

    def save(self, path):
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
