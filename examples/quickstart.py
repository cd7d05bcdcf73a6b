"""Quick start: fit a linear model with the autograd engine.

Run: python examples/quickstart.py (it checks its own result).
"""
import distgraph as dg

dg.manual_seed(0)
w = dg.randn(3, 1, requires_grad=True)
x = dg.randn(8, 3)
y = x @ dg.tensor([[1.0], [-2.0], [0.5]])

for step in range(200):
    loss = ((x @ w - y) ** 2).mean()
    w.grad = None
    loss.backward()
    with dg.no_grad():
        w -= 0.1 * w.grad

print(f"loss {loss.item():.2e}, w = {w.detach().numpy().ravel()}")
assert loss.item() < 1e-6
