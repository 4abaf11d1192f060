"""Adam steps on batches, the timed unit of this folder's scripts."""


def train_steps(m, opt, batches):
    """One Adam step of MSE loss per batch of ``batches``, ``m`` in training mode."""
    m.train()
    for b in batches:
        pairs = {} if getattr(b, "pairs", None) is None else {"pairs": b.pairs}  # a PairTable's
        loss = ((m(b.z, b.pos, b.batch, **pairs).view(-1) - b.y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
