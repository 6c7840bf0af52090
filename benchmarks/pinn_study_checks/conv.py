import time, torch, sys
torch.set_num_threads(1)
from pinn.train import make_model, train
pde, adam, lb, nc, nb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
lr = float(sys.argv[6]) if len(sys.argv) > 6 else 1e-3
m = make_model(pde, 64, 4, seed=0)
t=time.perf_counter()
h = train(m, pde, adam_steps=adam, lbfgs_steps=lb, n_collocation=nc, n_boundary=nb, progress=False, eval_every=250, lr=lr)
print(pde, adam, lb, nc, nb, lr, "time", time.perf_counter()-t, "steps", h["step"][-1])
for s, l in zip(h["l2_step"], h["l2"]): print(s, f"{l:.3e}")
