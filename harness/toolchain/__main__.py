"""`python -m harness.toolchain [NAME ...]`: build the pinned programs (the kind images' by default;
`local-mesh` for the local mesh's), printing where each is."""

from __future__ import annotations

import sys

from harness.errors import HarnessError
from harness.toolchain.gobuild import ensure_program
from harness.toolchain.programs import ALL, BY_NAME, LOCAL_MESH


def main(argv: list[str]) -> int:
    try:
        if argv == ["local-mesh"]:
            progs = list(LOCAL_MESH)
        else:
            progs = [BY_NAME[n] for n in argv] if argv else list(ALL)
    except KeyError as exc:
        print(
            f"egress-harness: error: unknown program {exc}: use local-mesh or one of {', '.join(BY_NAME)}",
            file=sys.stderr,
        )
        return 2
    try:
        for prog in progs:
            print(f"{prog.name} {prog.version}: {ensure_program(prog)}")
    except HarnessError as exc:
        print(f"egress-harness: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
