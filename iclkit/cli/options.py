"""Options and file handling shared by the ``iclkit`` subcommands, each defined once.

- :func:`add_subcommand`: a subcommand's parser, bound to its ``run`` function;
- :func:`add_prompt_options` / :func:`prompts_config_from`: the MoR prompt distribution
  (``--d --K --n --snr --sigma --pi --symmetric --batch --seed --rho``), with the defaults of a
  library :class:`~iclkit.constructions.prompts.PromptsConfig`;
- :func:`add_out_option`, :func:`add_json_option`, :func:`add_progress_option`: ``--out``,
  ``--json`` (one JSON object instead of a table) and ``--progress/--no-progress``;
- :func:`float_list` (comma-separated numbers), :func:`print_json`, and reading / atomically
  writing ``.npz`` files (:func:`load_npz`, :func:`save_npz`).

The same flag means the same thing in every subcommand: ``--n`` is the number of in-context
examples per prompt, ``--batch`` the number of prompts, ``--snr`` the signal-to-noise ratio
``||beta|| / sigma`` (symmetric) or ``min_jk ||beta_j - beta_k|| / sigma`` that sets sigma per
prompt.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from iclkit.constructions.prompts import PromptsConfig
from iclkit.io import to_jsonable, write_atomically
from iclkit.theory.mor import MoRConfig
from iclkit.theory.validation import ParameterError

SubParsers = Any  # argparse._SubParsersAction (private type)
Run = Callable[[argparse.Namespace], int]


def add_subcommand(
    sub: SubParsers, name: str, run: Run, *, summary: str, description: str
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` (``summary`` in the command list, ``description`` in its help)."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=summary, description=description)
    p.set_defaults(func=run)
    return p


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


def add_out_option(
    p: argparse.ArgumentParser, what: str, *, required: bool = False, default: str | None = None
) -> None:
    """``--out``: where the subcommand writes ``what``."""
    suffix = f" (default {default})" if default is not None else ""
    p.add_argument("--out", required=required, default=default, help=f"{what}{suffix}")


def add_json_option(p: argparse.ArgumentParser) -> None:
    """``--json``: print one JSON object instead of a table."""
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def add_progress_option(p: argparse.ArgumentParser) -> None:
    """``--progress/--no-progress``: show or hide a progress bar (shown by default)."""
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="show a progress bar (default: shown)",
    )


def add_prompt_options(p: argparse.ArgumentParser, defaults: PromptsConfig) -> None:
    """The MoR prompt distribution and its local initialisation, defaults from ``defaults``."""
    mor = defaults.mor
    g = p.add_argument_group("MoR prompt distribution")
    g.add_argument("--d", type=int, default=mor.d, help=f"dimension of x (default {mor.d})")
    g.add_argument("--K", type=int, default=mor.K, help=f"number of components (default {mor.K})")
    g.add_argument(
        "--n", type=int, default=mor.n, help=f"in-context examples per prompt (default {mor.n})"
    )
    g.add_argument(
        "--snr",
        type=float,
        default=None,
        help="signal-to-noise ratio eta: ||beta||/sigma (symmetric) or "
        f"min_jk ||beta_j - beta_k||/sigma; sets sigma per prompt (default {mor.snr})",
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
        "--batch",
        type=int,
        default=defaults.batch,
        help=f"number of prompts B (default {defaults.batch})",
    )
    g.add_argument(
        "--seed", type=int, default=defaults.seed, help=f"random seed (default {defaults.seed})"
    )
    g.add_argument(
        "--rho",
        type=float,
        default=defaults.rho,
        help="relative size of the local initialisation's perturbation, "
        f"init_k = beta_k + rho ||beta_k|| u_k (default {defaults.rho})",
    )
    p.set_defaults(_prompt_defaults=defaults)


def mor_config_from(args: argparse.Namespace) -> MoRConfig:
    """The :class:`MoRConfig` of the prompt options (neither --snr nor --sigma: the default's)."""
    default: MoRConfig = args._prompt_defaults.mor
    snr, sigma = args.snr, args.sigma
    if snr is None and sigma is None:
        snr, sigma = default.snr, default.sigma
    return default.replace(
        d=args.d,
        K=args.K,
        n=args.n,
        snr=snr,
        sigma=sigma,
        pi=tuple(args.pi) if args.pi is not None else None,
        symmetric=args.symmetric,
    )


def prompts_config_from(args: argparse.Namespace) -> PromptsConfig:
    """The :class:`PromptsConfig` of the prompt options."""
    return PromptsConfig(mor_config_from(args), batch=args.batch, seed=args.seed, rho=args.rho)


def load_npz(
    path: str, required: Sequence[str], optional: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """Load arrays from ``path`` as float64 tensors.

    A missing file or key (named ``--in``) and NaN/inf entries are ParameterErrors.
    """
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
    out: dict[str, torch.Tensor] = {}
    for k in (*required, *optional):
        if k in arrays:
            a = arrays[k]
            if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
                raise ParameterError(f"{k}: array in {path} contains NaN or infinite entries")
            out[k] = torch.from_numpy(a).to(torch.float64)
    return out


def save_npz(path: str, arrays: dict[str, Any]) -> None:
    """Write ``arrays`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    payload: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    write_atomically(path, lambda fh: np.savez(fh, **payload))
