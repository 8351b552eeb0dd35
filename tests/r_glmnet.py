"""R's ``glmnet`` as a test oracle: PredictDB's own ``cv.glmnet`` call, run by ``Rscript``.

PredictDB fits its models in R (``cv.glmnet(x, y, nfolds, alpha = 0.5, type.measure = "mse",
foldid, keep = TRUE)``, glmnet computing its own lambda path). This module runs exactly that call
on arrays handed over as little-endian binary files and returns what PredictDB reads from the fit.
Debian/Ubuntu: ``apt-get install r-cran-glmnet``. CI installs it and sets ``EXPREDICT_REQUIRE_R=1``
so that the oracle tests fail rather than skip when it is missing.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

_SCRIPT = r"""
args <- commandArgs(trailingOnly = TRUE)
d <- args[1]
dims <- scan(file.path(d, "dims.txt"), quiet = TRUE)
n <- dims[1]; p <- dims[2]; alpha <- dims[3]; thresh <- dims[4]
rd <- function(f, k) readBin(file.path(d, f), "double", k, endian = "little")
x <- matrix(rd("x.bin", n * p), n, p)
y <- rd("y.bin", n)
foldid <- readBin(file.path(d, "foldid.bin"), "integer", n, size = 4, endian = "little")
suppressMessages(library(glmnet))
t0 <- proc.time()[["elapsed"]]
fit <- cv.glmnet(x, y, nfolds = max(foldid), alpha = alpha, type.measure = "mse", foldid = foldid, keep = TRUE,
                 thresh = thresh)
secs <- proc.time()[["elapsed"]] - t0
wr <- function(v, f) writeBin(as.double(v), file.path(d, f), endian = "little")
wr(fit$lambda, "lambda.bin")
wr(fit$cvm, "cvm.bin")
wr(fit$lambda.min, "lambda_min.bin")
wr(as.numeric(coef(fit, s = "lambda.min")), "coef.bin")
wr(fit$glmnet.fit$dev.ratio, "dev_ratio.bin")
wr(fit$nzero, "nzero.bin")
wr(secs, "seconds.bin")
"""


@dataclass(frozen=True)
class RCvGlmnet:
    """What PredictDB takes from ``cv.glmnet``: the path, the CV curve, lambda.min and the refit there."""

    lambdas: NDArray[np.float64]
    cvm: NDArray[np.float64]
    lambda_min: float
    intercept: float
    coef: NDArray[np.float64]  # (p,) at lambda.min, raw scale
    dev_ratio: NDArray[np.float64]
    nzero: NDArray[np.int64]
    seconds: float  # cv.glmnet's own run time, R start-up excluded

    @property
    def best_index(self) -> int:
        return int(np.flatnonzero(self.lambdas == self.lambda_min)[0])


@functools.cache
def r_glmnet_available() -> bool:
    """Whether ``Rscript`` runs and loads the ``glmnet`` package."""
    if shutil.which("Rscript") is None:
        return False
    probe = subprocess.run(["Rscript", "-e", 'quit(status = !requireNamespace("glmnet", quietly = TRUE))'],
                           capture_output=True, check=False)  # fmt: skip
    return probe.returncode == 0


def require_r_glmnet() -> None:
    """Skip the calling test without R glmnet, or fail when ``EXPREDICT_REQUIRE_R=1`` (CI)."""
    if r_glmnet_available():
        return
    msg = "R with the glmnet package is needed (apt-get install r-cran-glmnet)"
    if os.environ.get("EXPREDICT_REQUIRE_R") == "1":
        pytest.fail(msg + "; EXPREDICT_REQUIRE_R=1")
    pytest.skip(msg)


def r_cv_glmnet(X: NDArray[np.floating], y: NDArray[np.floating], fold_ids: NDArray[np.integer],
                alpha: float = 0.5, thresh: float = 1e-7) -> RCvGlmnet:  # fmt: skip
    """PredictDB's ``cv.glmnet`` call on ``X`` (n, p), ``y`` (n,) and fold ids (any labels, mapped to 1..K);
    ``thresh`` is glmnet's convergence threshold (its default, 1e-7, is PredictDB's)."""
    X = np.asarray(X, dtype="<f8")
    y = np.asarray(y, dtype="<f8")
    _, fid = np.unique(np.asarray(fold_ids), return_inverse=True)
    n, p = X.shape
    with tempfile.TemporaryDirectory(prefix="r_glmnet_") as tmp:
        d = Path(tmp)
        (d / "dims.txt").write_text(f"{n} {p} {alpha!r} {thresh!r}\n")
        (d / "x.bin").write_bytes(X.tobytes(order="F"))
        (d / "y.bin").write_bytes(y.tobytes())
        (d / "foldid.bin").write_bytes((fid + 1).astype("<i4").tobytes())
        (d / "fit.R").write_text(_SCRIPT)
        run = subprocess.run(["Rscript", str(d / "fit.R"), str(d)], capture_output=True, text=True, check=False,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})  # single-threaded, as our fits  # fmt: skip
        if run.returncode != 0:
            msg = f"Rscript cv.glmnet failed (exit {run.returncode}):\n{run.stderr[-2000:]}"
            raise RuntimeError(msg)

        def rd(name: str) -> NDArray[np.float64]:
            return np.frombuffer((d / name).read_bytes(), dtype="<f8").astype(np.float64)

        b = rd("coef.bin")
        return RCvGlmnet(lambdas=rd("lambda.bin"), cvm=rd("cvm.bin"), lambda_min=float(rd("lambda_min.bin")[0]),
                         intercept=float(b[0]), coef=b[1:], dev_ratio=rd("dev_ratio.bin"),
                         nzero=rd("nzero.bin").astype(np.int64), seconds=float(rd("seconds.bin")[0]))  # fmt: skip
