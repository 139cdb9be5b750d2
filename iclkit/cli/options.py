"""Options and file handling shared by several ``iclkit`` subcommands.

Defined once: the MoR prompt-distribution options, comma-separated float lists, JSON output,
and reading / atomically writing ``.npz`` files.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from iclkit.io import to_jsonable
from iclkit.theory.validation import ParameterError

SubParsers = Any  # argparse._SubParsersAction (private type)


def print_json(obj: object) -> None:
    """Print ``obj`` as one JSON document (numpy/torch values converted, NaN/inf as null)."""
    print(json.dumps(to_jsonable(obj), sort_keys=False))


def float_list(text: str) -> list[float]:
    """Parse '0.5,0.3,0.2' into floats (argparse type)."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def load_npz(path: str, required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
    """Load arrays from ``path``; missing file/keys and NaN/inf entries are ParameterErrors."""
    import os

    import numpy as np

    if not os.path.isfile(path):
        raise ParameterError(f"--in: file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError) as exc:
        raise ParameterError(f"--in: cannot read {path} as .npz ({exc})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise ParameterError(
            f"--in: {path} is missing key(s) {', '.join(missing)} (required: {', '.join(required)})"
        )
    out: dict[str, Any] = {}
    for k in (*required, *optional):
        if k in arrays:
            a = arrays[k]
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise ParameterError(f"{k}: array in {path} contains NaN or infinite entries")
            out[k] = a
    return out


def save_npz(path: str, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    import numpy as np

    from iclkit.io import write_atomically

    payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    write_atomically(path, lambda fh: np.savez(fh, **payload))


def add_mor_options(
    p: argparse.ArgumentParser, *, d: int, K: int, n: int, snr: float, batch: int
) -> None:
    g = p.add_argument_group("MoR prompt distribution (SPEC.md 'Data')")
    g.add_argument("--d", type=int, default=d, help=f"dimension of x (default {d})")
    g.add_argument("--K", type=int, default=K, help=f"number of components (default {K})")
    g.add_argument("--n", type=int, default=n, help=f"in-context examples per prompt (default {n})")
    g.add_argument(
        "--snr",
        type=float,
        default=None,
        help=f"signal-to-noise ratio eta: ||beta||/sigma (symmetric) or "
        f"min_jk ||beta_j - beta_k||/sigma; sets sigma per prompt (default {snr})",
    )
    g.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level sigma, the same for every prompt (instead of --snr)",
    )
    g.add_argument(
        "--pi",
        type=float_list,
        default=None,
        help="mixing weights, comma-separated, summing to 1 (default uniform)",
    )
    g.add_argument(
        "--symmetric",
        action="store_true",
        help="symmetric two-component model: K=2, beta_2=-beta_1, pi=(1/2,1/2)",
    )
    g.add_argument(
        "--batch", type=int, default=batch, help=f"number of prompts B (default {batch})"
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(_default_snr=snr)


def mor_config_from(args: argparse.Namespace) -> Any:
    from iclkit.theory.mor import MoRConfig

    snr = args.snr
    if snr is None and args.sigma is None:
        snr = args._default_snr
    return MoRConfig(
        d=args.d,
        K=args.K,
        n=args.n,
        snr=snr,
        sigma=args.sigma,
        pi=tuple(args.pi) if args.pi is not None else None,
        symmetric=args.symmetric,
    )


# --------------------------------------------------------------------------- iclkit sample
