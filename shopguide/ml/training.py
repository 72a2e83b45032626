"""Fine-tuning loops for the bi-encoder (retriever) and the cross-encoder (reranker).

Both take plain Python data and report ``progress(stage, step, total, loss)`` after each step.
"""

import math
import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .encoder import QUERY_MAX_LENGTH


@dataclass
class Pair:
    """A training query with one relevant product and optional hard negative products."""

    query: str
    positive: str  # product key
    negatives: list = field(default_factory=list)


@dataclass
class BiEncoderConfig:
    epochs: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-4
    warmup_share: float = 0.1
    scale: float = 20.0  # cosine similarities times this are the softmax logits
    product_max_length: int = 48
    padding_groups: int = 2  # a batch's product texts are padded in this many groups of similar length
    freeze_word_embeddings: bool = True  # faster steps; the vocabulary needs no new meanings
    seed: int = 42


@dataclass
class CrossEncoderConfig:
    epochs: int = 1
    batch_size: int = 32
    learning_rate: float = 5e-5
    warmup_share: float = 0.1
    max_length: int = 64
    seed: int = 42


def seed_everything(seed):
    random.seed(seed)
    torch.manual_seed(seed)


def warmup_then_linear_decay(optimizer, total_steps, warmup_share):
    warmup = max(1, int(total_steps * warmup_share))

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_optimizer(model, config, total_steps):
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=0.01)
    return optimizer, warmup_then_linear_decay(optimizer, total_steps, config.warmup_share)


def batches_of(items, size, rng):
    items = list(items)
    rng.shuffle(items)
    return [items[start : start + size] for start in range(0, len(items), size)]


def fit(model, items, config, batch_loss, stage, progress=None):
    """The shared loop: shuffled batches, AdamW with warm-up then linear decay, clipped
    gradients. ``batch_loss(batch)`` returns the loss tensor. Returns the mean loss per epoch."""
    if not items:
        raise ValueError(f"No examples for {stage}: nothing to fine-tune on.")
    seed_everything(config.seed)
    rng = random.Random(config.seed)
    total_steps = config.epochs * math.ceil(len(items) / config.batch_size)
    optimizer, scheduler = make_optimizer(model, config, total_steps)
    model.train()
    step, epoch_losses = 0, []
    try:
        for _ in range(config.epochs):
            losses = []
            for batch in batches_of(items, config.batch_size, rng):
                loss = batch_loss(batch)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                step += 1
                losses.append(loss.item())
                if progress:
                    progress(stage, step, total_steps, losses[-1])
            epoch_losses.append(sum(losses) / len(losses))
    finally:
        model.eval()
    return epoch_losses


def train_bi_encoder(encoder, pairs, texts, relevant, config=None, progress=None):
    """Contrastive fine-tuning with in-batch and hard negatives.

    Each query must pick its positive among every product of the batch (the other queries'
    positives and all hard negatives). Products known to be relevant to a query (``relevant``:
    query -> set of keys) are never used as its negatives. Returns the mean loss per epoch.
    """
    config = config or BiEncoderConfig()

    def batch_loss(batch):
        keys = [pair.positive for pair in batch] + [key for pair in batch for key in pair.negatives]
        query_vectors = encoder.embed([pair.query for pair in batch], QUERY_MAX_LENGTH)
        product_vectors = encoder.embed_grouped(
            [texts[key] for key in keys], config.product_max_length, config.padding_groups
        )
        logits = query_vectors @ product_vectors.T * config.scale
        false_negatives = torch.tensor(
            [
                [column != row and key in relevant.get(pair.query, ()) for column, key in enumerate(keys)]
                for row, pair in enumerate(batch)
            ]
        )
        logits = logits.masked_fill(false_negatives, float("-inf"))
        return F.cross_entropy(logits, torch.arange(len(batch)))

    embeddings = encoder.model.get_input_embeddings().weight
    embeddings.requires_grad_(not config.freeze_word_embeddings)
    try:
        return fit(encoder.model, pairs, config, batch_loss, "training retriever", progress)
    finally:
        embeddings.requires_grad_(True)


def train_cross_encoder(cross_encoder, examples, config=None, progress=None):
    """Fit the reranker to ``examples`` of ``(query, product text, target in [0, 1])``.

    Targets are graded (grade / top grade); binary cross-entropy on the logit. Returns the
    mean loss per epoch.
    """
    config = config or CrossEncoderConfig()

    def batch_loss(batch):
        queries, texts, targets = zip(*batch)
        logits = cross_encoder.logits(queries, texts, config.max_length)
        return F.binary_cross_entropy_with_logits(logits, torch.tensor(targets, dtype=logits.dtype))

    return fit(cross_encoder.model, examples, config, batch_loss, "training reranker", progress)
