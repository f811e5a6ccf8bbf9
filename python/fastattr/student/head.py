"""The distillation head: one MLP shared by queries and items, unit-norm output, learnable alpha and beta."""

from __future__ import annotations

from typing import Any

from .._deps import require
from ..errors import CheckpointError

torch = require("torch", feature="fastattr.student")
nn = torch.nn
F = torch.nn.functional

__all__ = ["Head", "Embedder", "join_features"]


def join_features(image_features: Any, text_features: Any) -> Any:
    """f(x, c): the concatenation of the unit-normalized image and text features.

    Each part is normalized first so that neither encoder dominates the input by its scale alone
    (a CLS token and a mean-pooled sentence vector have very different norms).

    Example:
        >>> join_features(torch.ones(2, 3), torch.ones(2, 5)).shape
        torch.Size([2, 8])
    """
    return torch.cat([F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)], dim=-1)


class Head(nn.Module):
    """g: an MLP with ``n_hidden`` ReLU + dropout layers, then a linear map to ``dim``, L2-normalized.

    DESIGN §3 (paper: 1280 -> 768, three hidden layers, dropout 0.1, 768-d output), scaled to
    the width given. ``alpha`` and ``beta`` turn a cosine into a logit for the ranking loss.

    Example:
        >>> head = Head(8, hidden=16, dim=4)
        >>> head(torch.randn(3, 8)).norm(dim=-1).allclose(torch.ones(3))
        True
    """

    def __init__(self, in_dim: int, *, hidden: int = 256, dim: int = 128, n_hidden: int = 3,
                 dropout: float = 0.1, skip: bool = True, image_dim: int | None = None,
                 image_weight: float = 0.5, alpha: float = 10.0, beta: float = 0.0) -> None:
        super().__init__()
        if min(in_dim, hidden, dim, n_hidden) < 1 or not 0.0 <= dropout < 1.0:
            raise CheckpointError(
                f"Head sizes must be positive and dropout in [0, 1): in_dim={in_dim}, hidden={hidden}, "
                f"dim={dim}, n_hidden={n_hidden}, dropout={dropout}."
            )
        if image_dim is not None and not (0 <= image_dim <= in_dim and 0.0 <= image_weight <= 1.0):
            raise CheckpointError(f"image_dim {image_dim} must lie in [0, {in_dim}] and image_weight "
                                  f"{image_weight} in [0, 1].")
        # Relative weight of the image and text parts of f (0.5 = the plain concatenation). It is
        # chosen on held-out queries before training (train_head), not learned by gradient.
        scale = torch.ones(in_dim)
        if image_dim is not None:
            scale[:image_dim] = 2.0 * image_weight
            scale[image_dim:] = 2.0 * (1.0 - image_weight)
        self.register_buffer("part_scale", scale, persistent=False)  # rebuilt from the config
        layers: list[Any] = []
        width = in_dim
        for _ in range(n_hidden):
            layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.mlp = nn.Sequential(*layers)
        # A linear skip path (a deviation from the paper's plain MLP, for teacher sets of a few
        # hundred queries): with the MLP's last layer starting at zero, g starts as a projection
        # of the untuned features (see init_projection), so training departs from the untuned
        # ranking instead of from a random one, and little data cannot make it much worse.
        self.skip = nn.Linear(in_dim, dim, bias=False) if skip else None
        if skip:
            nn.init.zeros_(layers[-1].weight)
            nn.init.zeros_(layers[-1].bias)
        # Starting alpha well above 1 lets the logit alpha*cos+beta span a useful range from step 0.
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.beta = nn.Parameter(torch.tensor(float(beta)))
        self.config = {"in_dim": int(in_dim), "hidden": int(hidden), "dim": int(dim),
                       "n_hidden": int(n_hidden), "dropout": float(dropout), "skip": bool(skip),
                       "image_dim": None if image_dim is None else int(image_dim), "image_weight": float(image_weight)}

    @property
    def dim(self) -> int:
        return int(self.config["dim"])

    def forward(self, features: Any) -> Any:
        features = features * self.part_scale
        out = self.mlp(features)
        if self.skip is not None:
            out = out + self.skip(features)
        return F.normalize(out, dim=-1)

    def init_projection(self, features: Any) -> None:
        """Set the skip path to the top principal directions of ``features`` (N, in_dim).

        Cosines after the projection then approximate the untuned cosines (only the
        low-variance directions are dropped). Extra output dims beyond in_dim stay random.
        """
        if self.skip is None:
            return
        with torch.no_grad():
            features = features * self.part_scale
            centred = features - features.mean(0, keepdim=True)
            _, _, vh = torch.linalg.svd(centred, full_matrices=False)
            k = min(self.dim, vh.shape[0])
            self.skip.weight[:k] = vh[:k]

    def logits(self, query_embeddings: Any, item_embeddings: Any) -> Any:
        """alpha * cos + beta for row-aligned pairs of unit embeddings."""
        return self.alpha * (query_embeddings * item_embeddings).sum(-1) + self.beta


class Embedder(nn.Module):
    """The full student: frozen encoders + join + head; forward(pixels, ids, mask) -> (B, D) unit rows.

    This is the module :func:`fastattr.student.load_embedder` returns and ``export/`` converts.

    Example:
        >>> emb = Embedder(image_encoder, text_encoder, head)  # doctest: +SKIP
        >>> emb(pixel_values, input_ids, attention_mask).shape  # doctest: +SKIP
        torch.Size([2, 128])
    """

    def __init__(self, image_encoder: Any, text_encoder: Any, head: Head) -> None:
        super().__init__()
        self.image_encoder, self.text_encoder, self.head = image_encoder, text_encoder, head

    def forward(self, pixel_values: Any, input_ids: Any, attention_mask: Any) -> Any:
        features = join_features(self.image_encoder(pixel_values), self.text_encoder(input_ids, attention_mask))
        return self.head(features)
