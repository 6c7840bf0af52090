"""The studies, as orchestration only: which networks are built, trained and measured.

* :mod:`pinn.studies.pinn_compare` -- ``python -m pinn compare``: dense vs H-matrix
  (post-hoc, fine-tuned, dynamic) vs SVD, pruning, quantization and half precision on PDE
  problems, over seeds, with the NTK in function space;
* :mod:`pinn.studies.operator` -- ``python -m pinn operator``: operator learning on grids.

Both use the one training loop (:func:`pinn.train`), the one registry of methods and the one
byte rule (:data:`pinn.compress.REGISTRY`, :func:`pinn.compress.layer_bytes`) and write their
tables and plots with :mod:`pinn.report`.
"""
