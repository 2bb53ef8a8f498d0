#!/usr/bin/env python3
"""Write requirements.txt from setup.cfg: every runtime dependency (install_requires and the
[prod] extra) pinned to the version installed in this environment.

    .venv/bin/python scripts/gen_requirements.py           # (re)write requirements.txt
    .venv/bin/python scripts/gen_requirements.py --check   # exit 1 if it is stale

Stale means: a dependency of setup.cfg is missing from the file or pinned to a version its
specifier in setup.cfg refuses, or the file names one setup.cfg no longer has.
"""

from __future__ import annotations

import argparse
import configparser
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SETUP_CFG = ROOT / "setup.cfg"
OUTPUT = ROOT / "requirements.txt"
EXTRAS = ("prod",)
HEADER = (
    "# Generated from setup.cfg by scripts/gen_requirements.py: do not edit by hand.\n"
    "# The service's runtime dependencies (install_requires and [prod]), pinned:\n"
    "#     pip install -r requirements.txt\n"
)


def wanted(setup_cfg: Path = SETUP_CFG) -> list[Requirement]:
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    lines = parser.get("options", "install_requires").splitlines()
    for extra in EXTRAS:
        lines += parser.get("options.extras_require", extra).splitlines()
    found: dict[str, Requirement] = {}
    for line in lines:
        if line.strip():
            req = Requirement(line.strip())
            found.setdefault(canonicalize_name(req.name), req)
    return sorted(found.values(), key=lambda r: canonicalize_name(r.name))


def render(requirements: list[Requirement]) -> str:
    out = [HEADER]
    for req in requirements:
        version = metadata.version(req.name)
        if not req.specifier.contains(version, prereleases=True):
            raise SystemExit(f"installed {req.name} {version} does not satisfy setup.cfg's {req}")
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        out.append(f"{req.name}{extras}=={version}\n")
    return "".join(out)


def problems(text: str, requirements: list[Requirement]) -> list[str]:
    pinned: dict[str, Requirement] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            req = Requirement(line.strip())
            pinned[canonicalize_name(req.name)] = req
    found = []
    for req in requirements:
        name = canonicalize_name(req.name)
        pin = pinned.pop(name, None)
        if pin is None:
            found.append(f"{req.name} is missing")
            continue
        versions = [s.version for s in pin.specifier if s.operator == "=="]
        if len(versions) != 1:
            found.append(f"{req.name} is not pinned with ==")
        elif not req.specifier.contains(versions[0], prereleases=True):
            found.append(f"{req.name}=={versions[0]} is refused by setup.cfg's {req}")
        if pin.extras != req.extras:
            found.append(f"{req.name}: extras {sorted(pin.extras)} instead of {sorted(req.extras)}")
    found += [f"{name} is no longer a dependency" for name in sorted(pinned)]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if stale")
    args = parser.parse_args(argv)
    requirements = wanted()
    if args.check:
        text = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        found = problems(text, requirements)
        for line in found:
            print(f"requirements.txt is stale: {line}", file=sys.stderr)
        if found:
            print("regenerate it: .venv/bin/python scripts/gen_requirements.py", file=sys.stderr)
        return 1 if found else 0
    OUTPUT.write_text(render(requirements), encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({len(requirements)} pinned dependencies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
