"""The version's encoder as web processes run it: the ONNX graph that training exported (see
``Encoder.export_onnx``), run by onnxruntime, with the ``tokenizers`` library. No torch, no
transformers: a process holds the graph (~67 MB, word embeddings in float16) and the runtime, and a short query takes
a third of torch's time on one thread (bench/serving.py)."""

import threading
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

# The longest texts, in tokens, either encoder reads: queries are short, product texts longer.
QUERY_MAX_LENGTH = 32
PRODUCT_MAX_LENGTH = 64


class OnnxEncoder:
    """Turns texts into unit vectors, as ``Encoder.encode`` does, with the graph in
    ``model_file`` and the tokenizer saved beside the transformers weights
    (``tokenizer_folder``/tokenizer.json). ``threads``: onnxruntime's threads (None: its
    default, one per core)."""

    def __init__(self, model_file, tokenizer_folder, threads=None):
        options = onnxruntime.SessionOptions()
        options.enable_cpu_mem_arena = False  # the arena keeps ~18 MB a short query never needs again
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
        self.tokenizer_file = str(Path(tokenizer_folder) / "tokenizer.json")
        self.dimensions = int(self.session.get_outputs()[0].shape[-1])
        self._tokenizers, self._lock = {}, threading.Lock()

    def tokenizer(self, max_length):
        """A tokenizer that truncates at ``max_length``, configured once and then only read:
        threads of a web process share it."""
        tokenizer = self._tokenizers.get(max_length)
        if tokenizer is None:
            with self._lock:
                tokenizer = self._tokenizers.get(max_length)
                if tokenizer is None:
                    tokenizer = Tokenizer.from_file(self.tokenizer_file)
                    tokenizer.no_padding()
                    tokenizer.enable_truncation(max_length)
                    self._tokenizers[max_length] = tokenizer
        return tokenizer

    def run(self, texts, max_length):
        encodings = self.tokenizer(max_length).encode_batch(list(texts))
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def encode(self, texts, *, max_length=PRODUCT_MAX_LENGTH, batch_size=64, progress=None):
        """Unit vectors (float32, one row per text), batched by length like ``Encoder.encode``."""
        texts = list(texts)
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]))
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            vectors[indices] = self.run([texts[i] for i in indices], max_length)
            if progress:
                progress(min(start + batch_size, len(texts)), len(texts))
        return vectors

    def encode_queries(self, queries, **kwargs):
        return self.encode(queries, max_length=QUERY_MAX_LENGTH, **kwargs)
