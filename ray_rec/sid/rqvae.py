"""RQ-VAE: an MLP encoder, L residual codebooks in its latent space, an MLP decoder.

Training minimises ``||x - dec(z_q)||^2 + sum_l (||sg(r_l) - e_l||^2 + beta ||r_l - sg(e_l)||^2)``
where ``r_l`` is the latent residual at level l and ``e_l`` its nearest code; gradients pass the
quantizer straight through. The codebooks start from residual k-means on the initial latents, and
codes that no item uses are reset to random residuals every few epochs (dead-code reset). The
balanced (Sinkhorn) last-level assignment that breaks collisions is applied after encoding
(``collisions.balance_last_level``). :class:`RQModel` and :func:`train_rq` are shared with
RQ-KMeans+ (``rqkmeans_plus.py``), which only swaps the encoder, decoder and initial codebooks.
Example::

    quantizer, history = fit_rqvae(x, sizes=[256, 256, 256], hidden_dims=[512, 256], latent_dim=64)
    codes = quantizer.encode(x)   # (n, 3)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ray_rec.sid.quantize import Quantizer, check_embeddings, kmeans, nearest, residual_encode, squared_distances


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers through ``dims`` with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class RQModel(nn.Module):
    """encoder -> residual quantizer (L codebooks) -> decoder."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, codebooks: list[np.ndarray], beta: float):
        super().__init__()
        self.encoder, self.decoder, self.beta = encoder, decoder, beta
        self.codebooks = nn.ParameterList([nn.Parameter(torch.as_tensor(c, dtype=torch.float32).clone())
                                           for c in codebooks])

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(B, h) latents -> straight-through z_q (B, h), codes (B, L), VQ loss (), residuals per level."""
        residual, total = z, torch.zeros_like(z)
        codes, loss, residuals = [], z.new_zeros(()), []
        for cb in self.codebooks:
            residuals.append(residual.detach())
            idx = torch.cdist(residual.detach(), cb.detach()).argmin(1)
            e = cb[idx]
            loss = loss + ((residual.detach() - e) ** 2).mean() + self.beta * ((residual - e.detach()) ** 2).mean()
            total = total + e
            residual = residual - e.detach()
            codes.append(idx)
        z_q = z + (total - z).detach()  # straight-through: decoder sees codes, encoder gets gradients
        return z_q, torch.stack(codes, 1), loss, residuals

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """(B, d) -> reconstruction (B, d), codes (B, L), VQ loss (), latent residuals per level."""
        z_q, codes, vq_loss, residuals = self.quantize(self.encoder(x))
        return self.decoder(z_q), codes, vq_loss, residuals


@dataclass
class NeuralQuantizer(Quantizer):
    """A trained :class:`RQModel` behind the :class:`Quantizer` interface (picklable for Ray)."""

    model: RQModel
    dim: int
    mean: np.ndarray | None = None   # (d,) per-feature mean removed before the encoder (None: raw input)
    scale: np.ndarray | None = None  # (d,) per-feature std the input is divided by
    history: list[float] = field(default_factory=list)  # mean training loss per epoch

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """(n, d) raw vectors -> (n, d) model inputs."""
        return x if self.mean is None else (x - self.mean) / self.scale

    def unstandardize(self, y: np.ndarray) -> np.ndarray:
        """(n, d) model outputs -> (n, d) in the raw input space."""
        return y if self.mean is None else y * self.scale + self.mean

    @property
    def sizes(self) -> list[int]:  # type: ignore[override]
        return [len(cb) for cb in self.model.codebooks]

    def _codebooks(self) -> list[np.ndarray]:
        return [cb.detach().numpy() for cb in self.model.codebooks]

    @torch.no_grad()
    def latents(self, x: np.ndarray) -> np.ndarray:
        """(n, d) item vectors -> (n, h) encoder outputs."""
        x = self.standardize(check_embeddings(x, dim=self.dim, where="items to encode"))
        return self.model.encoder(torch.tensor(x, dtype=torch.float32)).numpy()

    def encode(self, x: np.ndarray) -> np.ndarray:
        return residual_encode(self.latents(x), self._codebooks())[0]

    @torch.no_grad()
    def decode(self, codes: np.ndarray) -> np.ndarray:
        z_q = sum(cb[torch.from_numpy(codes[:, level])] for level, cb in enumerate(self.model.codebooks))
        return self.unstandardize(self.model.decoder(z_q).numpy())

    def last_level_cost(self, x: np.ndarray, codes: np.ndarray) -> np.ndarray:
        cbs = self._codebooks()
        residual = self.latents(x)
        for level, cb in enumerate(cbs[:-1]):
            residual = residual - cb[codes[:, level]]
        return squared_distances(residual, cbs[-1])


def kmeans_codebooks(z: np.ndarray, sizes: list[int], seed: int, iters: int) -> list[np.ndarray]:
    """(n, h) latents -> residual k-means codebooks [(K_l, h)] (the RQ-VAE initialisation)."""
    residual, out = z.astype(np.float32).copy(), []
    for level, k in enumerate(sizes):
        c = kmeans(residual, k, seed=seed + level, iters=iters)
        residual -= c[nearest(residual, c)]
        out.append(c)
    return out


@torch.no_grad()
def reset_dead_codes(model: RQModel, x: torch.Tensor, generator: torch.Generator) -> int:
    """Move every code no item uses onto the residual of a random item at its level; return how many."""
    _, codes, _, residuals = model(x)
    reset = 0
    for level, cb in enumerate(model.codebooks):
        used = torch.bincount(codes[:, level], minlength=len(cb)) > 0
        dead = torch.nonzero(~used).flatten()
        if len(dead):
            pick = torch.randint(len(x), (len(dead),), generator=generator)
            cb.data[dead] = residuals[level][pick]
            reset += len(dead)
    return reset


def train_rq(model: RQModel, x: np.ndarray, epochs: int, batch_size: int, lr: float, seed: int,
             dead_code_every: int = 10, desc: str = "rq") -> list[float]:
    """Train ``model`` on (n, d) items with Adam; return the mean loss of each epoch."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for epoch in tqdm(range(epochs), desc=desc, disable=None, leave=False):
        model.train()
        perm, total = torch.randperm(len(xt), generator=gen), 0.0
        for start in range(0, len(xt), batch_size):
            batch = xt[perm[start:start + batch_size]]
            x_hat, _, vq_loss, _ = model(batch)
            loss = ((x_hat - batch) ** 2).mean() + vq_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(batch)
        history.append(total / len(xt))
        if dead_code_every and ((epoch + 1) % dead_code_every == 0 or epoch + 1 == epochs):
            reset_dead_codes(model, xt, gen)
    model.eval()
    return history


def fit_rqvae(x: np.ndarray, sizes: list[int], hidden_dims: list[int], latent_dim: int, seed: int = 0,
              epochs: int = 200, batch_size: int = 512, lr: float = 1e-3, beta: float = 0.25,
              dead_code_every: int = 10, kmeans_iters: int = 30) -> NeuralQuantizer:
    """(n, d) item vectors -> a trained RQ-VAE with L codebooks of shapes (K_l, latent_dim)."""
    x = check_embeddings(x, min_items=max(sizes))
    # Unit-norm sentence vectors have per-feature variance ~1/d: the reconstruction term would be
    # dwarfed by the commitment term and the codes collapse. Standardise features instead.
    mean, scale = x.mean(0), x.std(0) + 1e-6
    x = ((x - mean) / scale).astype(np.float32)
    torch.manual_seed(seed)
    encoder = mlp([x.shape[1], *hidden_dims, latent_dim])
    decoder = mlp([latent_dim, *reversed(hidden_dims), x.shape[1]])
    with torch.no_grad():
        z0 = encoder(torch.from_numpy(x)).numpy()
    model = RQModel(encoder, decoder, kmeans_codebooks(z0, sizes, seed, kmeans_iters), beta)
    history = train_rq(model, x, epochs, batch_size, lr, seed, dead_code_every, desc="rqvae")
    return NeuralQuantizer(model, dim=x.shape[1], mean=mean, scale=scale, history=history)
