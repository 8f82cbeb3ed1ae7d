"""The long chaos run: ≥200 random SIGKILLs of `newsletter send` per provider, resumed to the end.

Prints, per provider, the kills, duplicates, missing and unknown deliveries by the fake
provider's own record (tests/chaos.py does the work; tests/test_exactly_once.py runs a
short version in `make test`).

    .venv/bin/python benchmarks/chaos.py [--kills 200] [--subscribers 2000] [--seed 11]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from chaos import run_chaos  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=2000)
    parser.add_argument("--fault-rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--providers", default="resend,postmark", help="resend is idempotent, postmark is not")
    args = parser.parse_args()
    failed = False
    for provider in args.providers.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            report = run_chaos(
                Path(tmp) / "site", provider, subscribers=args.subscribers, kills=args.kills,
                fault_rate=args.fault_rate, seed=args.seed,
            )  # fmt: skip
        print(report.line(), flush=True)
        failed |= report.duplicates > 0 or report.missing > report.unknown_resolved
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
