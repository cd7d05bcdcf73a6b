"""``distgraph-run``: placeholder until the launcher issue lands; says so clearly."""
import sys


def main(argv=None):
    print("distgraph-run: the launcher is not built yet (see the launcher issue); "
          "use `mpiexec -n N python train.py` meanwhile", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
